#!/usr/bin/node
// A plugd worker in Node.js, written from docs/protocol.md alone.
//
// Runs on Debian's /usr/bin/node (package nodejs; the sandbox's view holds
// /usr, not /usr/local). Its one library is the stock @msgpack/msgpack,
// vendored as the package's own one-file bundle (vendor/msgpack.min.js;
// vendor/README says which version, vendor/LICENSE.msgpack its license): no
// plugd code. It says plugd.hello, answers plugd.initialize, plugd.health and
// plugd.shutdown, and serves `echo` and `add`.
"use strict";

const net = require("net");
const { encode, decodeMultiStream } = require("./vendor/msgpack.min.js");

const REQUEST = 0, RESPONSE = 1;

const METHODS = {
  echo: (params) => (params.length > 0 ? params[0] : null),
  add: (params) => {
    const [a, b] = params;
    if (!Number.isInteger(a) || !Number.isInteger(b))
      throw { code: "invalid_request", message: "add takes two integers" };
    return a + b;
  },
};

const fd = Number.parseInt(process.env.PLUGD_FD ?? "3", 10);
const channel = new net.Socket({ fd, readable: true, writable: true });
const send = (message) => channel.write(encode(message));

function answer(msgid, method, params) {
  switch (method) {
    case "plugd.initialize":
      return send([RESPONSE, msgid, null, { methods: Object.keys(METHODS), hooks: [] }]);
    case "plugd.health":
      return send([RESPONSE, msgid, null, { status: "ok" }]);
    case "plugd.shutdown":
      send([RESPONSE, msgid, null, null]);
      return channel.end(() => process.exit(0));
  }
  const fn = METHODS[method];
  if (fn === undefined)
    return send([RESPONSE, msgid, { code: "method_not_found", message: `no method ${method}` }, null]);
  try {
    send([RESPONSE, msgid, null, fn(params)]);
  } catch (e) {
    send([RESPONSE, msgid, { code: e.code ?? "worker_error", message: String(e.message ?? e) }, null]);
  }
}

function handle(message) {
  if (message[0] === RESPONSE) {
    if (message[2] !== null) {
      console.error("plugd refused the handshake:", message[2]);
      process.exit(1);
    }
    return;
  }
  if (message[0] === REQUEST) answer(message[1], message[2], message[3]);
}

async function main() {
  send([REQUEST, 1, "plugd.hello", [{ protocol: 1, sdk: "node-worker/0.1" }]]);
  // the channel is a stream of messages back to back: the library splits it
  for await (const message of decodeMultiStream(channel)) handle(message);
  process.exit(0); // plugd closed the channel
}

main().catch((e) => {
  console.error("node-worker:", e);
  process.exit(1);
});
