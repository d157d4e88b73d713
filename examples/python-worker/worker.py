#!/usr/bin/python3
"""A plugd worker in Python, written from docs/protocol.md alone.

Runs on Debian's /usr/bin/python3, where python3-msgpack is installed.

Needs only Debian's python3-msgpack: no plugd code. It says plugd.hello,
answers plugd.initialize, plugd.health and plugd.shutdown, and serves
`echo` and `add`.
"""
import os
import socket
import sys

import msgpack

REQUEST, RESPONSE, NOTIFY = 0, 1, 2


def error(code, message):
    return {"code": code, "message": message}


def add(params):
    a, b = (params + [None, None])[:2]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)):
        raise ValueError("add takes two integers")
    return a + b


METHODS = {
    "echo": lambda params: params[0] if params else None,
    "add": add,
}


def main():
    fd = int(os.environ.get("PLUGD_FD", "3"))
    sock = socket.socket(fileno=fd)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def send(message):
        sock.sendall(msgpack.packb(message, use_bin_type=True))

    send([REQUEST, 1, "plugd.hello", [{"protocol": 1, "sdk": "python-worker/0.1"}]])
    while True:
        data = sock.recv(65536)
        if not data:
            return 0
        unpacker.feed(data)
        for message in unpacker:
            if message[0] == RESPONSE:
                if message[2] is not None:  # hello refused
                    print("plugd refused the handshake:", message[2], file=sys.stderr)
                    return 1
                continue
            if message[0] != REQUEST:
                continue
            _, msgid, method, params = message
            result, err = None, None
            if method == "plugd.initialize":
                result = {"methods": list(METHODS), "hooks": []}
            elif method == "plugd.health":
                result = {"status": "ok"}
            elif method == "plugd.shutdown":
                send([RESPONSE, msgid, None, None])
                return 0
            elif method in METHODS:
                try:
                    result = METHODS[method](params)
                except ValueError as e:
                    err = error("invalid_request", str(e))
            else:
                err = error("method_not_found", "no method %r" % method)
            send([RESPONSE, msgid, err, result])


if __name__ == "__main__":
    sys.exit(main())
