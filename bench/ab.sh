#!/bin/sh
# Same-run A/B of two builds: runs bench_supervisor and bench_host for build
# A and build B in turn (A B A B ...), so both see the same machine, and
# prints every JSON line tagged with its build, then one summary line per
# figure: the median over the rounds of A and of B and their ratio.
#
#   git worktree add --detach /tmp/base BASE && meson setup /tmp/base/build /tmp/base
#   ninja -C /tmp/base/build && ninja -C build
#   bench/ab.sh /tmp/base/build build 3
set -eu

if [ $# -lt 2 ]; then
    echo "usage: bench/ab.sh BUILD_A BUILD_B [ROUNDS]" >&2
    exit 2
fi
a=$1
b=$2
rounds=${3:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# bench_supervisor links the supervisor's code: each build runs its own.
# bench_host is a client of the plugd binary: B's client drives each
# build's plugd (PLUGD_BENCH_PLUGD), so only the daemon differs.
run() { # build tag
    "$1/bench/bench_supervisor" | sed "s/^{/{\"build\":\"$2\",/" | tee -a "$out"
    PLUGD_BENCH_PLUGD="$(cd "$1" && pwd)/supervisor/plugd" "$b/bench/bench_host" |
        sed "s/^{/{\"build\":\"$2\",/" | tee -a "$out"
}

i=0
while [ "$i" -lt "$rounds" ]; do
    run "$a" A
    run "$b" B
    i=$((i + 1))
done

python3 - "$out" <<'EOF'
import json, statistics, sys
# the figures issue 13 asks to compare, by bench name and field
FIGURES = [
    ("worker_echo_rtt", "p50_us", "placement"),
    ("spawn_to_ready", "median_us", None),
    ("spawn_to_ready_sandboxed", "median_us", None),
    ("crash_to_ready", "median_us", None),
    ("crash_to_ready_sandboxed", "median_us", None),
    ("host_echo_rtt", "p50_us", None),
    ("control_requests", "requests_per_s", "command"),
]
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for bench, field, key in FIGURES:
    groups = {}
    for r in rows:
        if r.get("bench") == bench and field in r:
            name = bench + (":" + str(r[key]) if key else "")
            groups.setdefault(name, {"A": [], "B": []})[r["build"]].append(r[field])
    for name, g in sorted(groups.items()):
        if g["A"] and g["B"]:
            ma, mb = statistics.median(g["A"]), statistics.median(g["B"])
            print(json.dumps({"figure": name, "field": field, "A_median": ma, "B_median": mb,
                              "B_over_A": round(mb / ma, 3) if ma else None,
                              "rounds": min(len(g["A"]), len(g["B"]))}))
EOF
