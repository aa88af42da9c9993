#!/usr/bin/env bash
# Every benchmark of silt on this machine, printed as one table (README, "Benchmarks"):
#   1. the job and the Parquet-write limit, one core (taskset -c 0), N events (default 2,000,000),
#      with its SQL transforms, and again without them (the alternatives' pipeline); each
#      three rounds of job then limit, the median round reported;
#   2. peak memory at 1M, 3M and 10M events (one core), and at 1M and 10M without transforms;
#   3. the gateway on all cores: 500-event JSON requests from a second process over loopback;
#   4. the alternatives on the same events, one core each: fastavro+pyarrow, DuckDB, Spark
#      (installed into a virtual environment in ~/.cache/silt-bench; Spark needs a Java 17+),
#      each writing the table silt writes, and silt's raw-table job (`silt run`) beside them:
#      three rounds each, interleaved, the median reported and the ratios taken to the silt run
#      of the same rounds; with SILT_BENCH_EVENT_FIELDS=1 again writing the event's fields only
#      (the smaller table they wrote before 2026-11-27 09:00 UTC).
# Figures go to bench-results/*.json and bench-results/summary.json.
#
#   scripts/bench.sh [EVENTS]        SILT_BENCH_SKIP=memory,alternatives to leave parts out
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
skip=${SILT_BENCH_SKIP:-}
. scripts/target-dir.sh
results=bench-results
mkdir -p "$results"
work=$(mktemp -d "${TMPDIR:-/tmp}/silt-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== building silt (release)" >&2
cargo build --release -p silt >&2
silt="$CARGO_TARGET_DIR/release/silt"
sync   # let the build's writes reach the disk before anything is timed
pin=(taskset -c 0)
command -v taskset >/dev/null || { echo "taskset not found: runs are not pinned" >&2; pin=(); }

echo "== 1. the job against the Parquet-write limit, $events events, one core" >&2
"${pin[@]}" "$silt" bench --events "$events" --gateway-events 0 --dir "$work/job" --out "$results/job.json"
sync
echo "== 1b. the same without SQL transforms (raw table only, as the alternatives), one core" >&2
"${pin[@]}" "$silt" bench --no-transforms --events "$events" --gateway-events 0 --dir "$work/job" --out "$results/job-plain.json"

if [[ ",$skip," != *",memory,"* ]]; then
  for n in 1000000 3000000 10000000; do
    echo "== 2. peak memory at $n events, one core" >&2
    "${pin[@]}" "$silt" bench --events "$n" --rounds 1 --gateway-events 0 --dir "$work/mem" --out "$results/memory-$n.json" >/dev/null
    rm -rf "$work/mem"
  done
  for n in 1000000 10000000; do
    echo "== 2b. peak memory at $n events without SQL transforms, one core" >&2
    "${pin[@]}" "$silt" bench --no-transforms --events "$n" --rounds 1 --gateway-events 0 --dir "$work/mem" --out "$results/memory-plain-$n.json" >/dev/null
    rm -rf "$work/mem"
  done
fi

echo "== 3. the gateway, 1,000,000 events in 500-event JSON requests, all cores" >&2
"$silt" bench --rounds 1 --events 10000 --gateway-events 1000000 --dir "$work/gateway" --out "$results/gateway.json" | grep gateway
rm -rf "$work/gateway"

rm -f "$results/alternatives-event-fields.json"
if [[ ",$skip," != *",alternatives,"* ]]; then
  venv="$HOME/.cache/silt-bench/venv"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s scripts/bench/requirements.txt "$venv/requirements.txt"; then
    echo "== installing the alternatives into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r scripts/bench/requirements.txt
    cp scripts/bench/requirements.txt "$venv/requirements.txt"
  fi
  echo "== 4. the alternatives on the same $events events, one core each" >&2
  "$venv/bin/python" scripts/bench/alternatives.py all --dir "$work/job" --silt "$silt" --out "$results/alternatives.json" >&2
  if [ "${SILT_BENCH_EVENT_FIELDS:-0}" = 1 ]; then
    echo "== 4b. the alternatives again, writing the event's fields only" >&2
    "$venv/bin/python" scripts/bench/alternatives.py all --event-fields-only --dir "$work/job" --silt "$silt" \
      --work "$work/job/alternatives-event-fields" --out "$results/alternatives-event-fields.json" >&2
  fi
fi

python3 scripts/bench/summary.py "$results"
