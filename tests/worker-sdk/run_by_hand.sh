#!/bin/sh
# A plugin run by hand (not by plugd) says so, says how to run it, and exits
# with status 2: the built hello example without PLUGD_FD, with fd 3 closed,
# and with PLUGD_FD naming something that is not a stream socket.
# Args: HELLO (the built examples/hello/hello).
set -u
hello=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

# expect WHY CMD...: runs CMD, checks exit status 2 and a stderr that names
# the reason WHY and the way to run a plugin
expect() {
    why=$1
    shift
    "$@" >/dev/null 2>"$work/stderr"
    status=$?
    err=$(cat "$work/stderr")
    case $err in
    *"not started by plugd ($why)"*"plugctl install DIR"*) ;;
    *)
        echo "FAIL [$why]: stderr: $err" >&2
        failed=1
        ;;
    esac
    if [ "$status" -ne 2 ]; then
        echo "FAIL [$why]: exit status $status, not 2" >&2
        failed=1
    fi
    echo "[$why] exit $status: $err"
}

expect "PLUGD_FD is not set" env -u PLUGD_FD "$hello" 3>&-
expect "PLUGD_FD is not set" env -u PLUGD_FD "$hello" 3</dev/null
expect "fd 3 is not open" env PLUGD_FD=3 "$hello" 3>&-
expect "fd 3 is not a socket" env PLUGD_FD=3 "$hello" 3</dev/null
expect "fd 3 is not a socket" sh -c 'echo | PLUGD_FD=3 "$0" 3<&0' "$hello"
expect 'PLUGD_FD="x3" is not a fd number' env PLUGD_FD=x3 "$hello"
if python3 -c 'import socket' 2>/dev/null; then
    # a datagram socket at fd 3 is no channel either
    expect "fd 3 is not a stream socket" python3 -c '
import os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
os.dup2(b.fileno(), 3)
os.environ["PLUGD_FD"] = "3"
os.execv(sys.argv[1], [sys.argv[1]])' "$hello"
fi
exit "$failed"
