#!/usr/bin/env bash
# bench/ab.sh — two streamer executables, A and B, interleaved run by run on the
# same tree to the three null-sink regions (start them: bench/nullsink.py up).
# For a change that must not cost speed or memory (a refactor): interleaving
# spreads the machine's noise over both; compare the medians.
#
# Usage: bench/ab.sh A_STREAMER B_STREAMER WEBROOT [RUNS]     (RUNS default 5)
# Prints one line per run ("A|B wall_s user_s sys_s maxrss_kib") and the medians.
set -euo pipefail
A=$1 B=$2 TREE=$3 RUNS=${4:-5}
export S3_HOST_BASE="http://127.0.0.1:18441|http://127.0.0.1:18442|http://127.0.0.1:18443"
export S3_ACCESS_KEY=bench S3_SECRET_KEY=bench STREAMER_BUCKET=bench
export DATABASE_INSTALLATION_TYPE=None STREAMER_MEMORY_BUDGET=256MiB STREAMER_QUORUM=3
export STREAMER_WEBROOT=$TREE
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$RUNS"); do
    for side in A B; do
        bin=$A; [ "$side" = B ] && bin=$B
        /usr/bin/time -f "$side %e %U %S %M" "$bin" MANUAL "ab-$side-$i" -q >/dev/null 2>>"$out"
    done
done
cat "$out"
python3 - "$out" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line[:2] in ("A ", "B ")]
for side in "AB":
    r = [x for x in rows if x[0] == side]
    wall = statistics.median(float(x[1]) for x in r)
    cpu = statistics.median(float(x[2]) + float(x[3]) for x in r)
    rss = statistics.median(int(x[4]) for x in r) / 1024
    print(f"{side}: {len(r)} runs, median wall {wall:.2f} s, CPU {cpu:.2f} s, max RSS {rss:.0f} MiB")
PY
