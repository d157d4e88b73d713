// A plugd worker in Go, written from docs/protocol.md alone.
//
// Built with Debian's golang-go and its msgpack library
// (golang-github-vmihailenco-msgpack.v5-dev), offline, in GOPATH mode
// (examples/go-worker/meson.build): no plugd code. It says plugd.hello,
// answers plugd.initialize, plugd.health and plugd.shutdown, and serves
// `echo` and `add`.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

const (
	request  = 0
	response = 1
)

type rpcError struct {
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
}

var methods = map[string]func(params []interface{}) (interface{}, *rpcError){
	"echo": func(params []interface{}) (interface{}, *rpcError) {
		if len(params) == 0 {
			return nil, nil
		}
		return params[0], nil
	},
	"add": func(params []interface{}) (interface{}, *rpcError) {
		if len(params) == 2 {
			a, aok := params[0].(int64)
			b, bok := params[1].(int64)
			if aok && bok {
				return a + b, nil
			}
		}
		return nil, &rpcError{"invalid_request", "add takes two integers"}
	},
}

// The channel plugd gave the worker: fd $PLUGD_FD (3 when unset).
func channel() (net.Conn, error) {
	fd := 3
	if s := os.Getenv("PLUGD_FD"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("PLUGD_FD=%q is not a fd number", s)
		}
		fd = n
	}
	f := os.NewFile(uintptr(fd), "plugd channel")
	defer f.Close() // FileConn keeps a copy
	return net.FileConn(f)
}

func main() {
	conn, err := channel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-worker: not started by plugd (install it with plugctl install DIR):", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(conn)
	enc := msgpack.NewEncoder(out)
	dec := msgpack.NewDecoder(bufio.NewReader(conn))
	dec.UseLooseInterfaceDecoding(true) // every integer an int64 (or uint64)
	send := func(message ...interface{}) {
		if enc.Encode(message) == nil {
			out.Flush()
		}
	}
	methodNames := make([]string, 0, len(methods))
	for name := range methods {
		methodNames = append(methodNames, name)
	}

	send(request, 1, "plugd.hello", []interface{}{map[string]interface{}{"protocol": 1, "sdk": "go-worker/0.1"}})
	for {
		v, err := dec.DecodeInterface()
		if err != nil {
			os.Exit(0) // plugd closed the channel
		}
		m, ok := v.([]interface{})
		if !ok || len(m) < 3 {
			continue
		}
		if kind, _ := m[0].(int64); kind == response {
			if m[2] != nil {
				fmt.Fprintln(os.Stderr, "plugd refused the handshake:", m[2])
				os.Exit(1)
			}
			continue
		} else if kind != request || len(m) != 4 {
			continue
		}
		msgid, method := m[1], fmt.Sprint(m[2])
		params, _ := m[3].([]interface{})
		switch method {
		case "plugd.initialize":
			send(response, msgid, nil, map[string]interface{}{"methods": methodNames, "hooks": []string{}})
		case "plugd.health":
			send(response, msgid, nil, map[string]interface{}{"status": "ok"})
		case "plugd.shutdown":
			send(response, msgid, nil, nil)
			os.Exit(0)
		default:
			fn, found := methods[method]
			if !found {
				send(response, msgid, &rpcError{"method_not_found", "no method " + method}, nil)
				continue
			}
			result, rerr := fn(params)
			if rerr != nil {
				send(response, msgid, rerr, nil)
			} else {
				send(response, msgid, nil, result)
			}
		}
	}
}
