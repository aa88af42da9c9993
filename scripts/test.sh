#!/usr/bin/env bash
# Runs every silt test: installs and starts the local AWS stand-ins (moto for S3, kinesalite
# for Kinesis) on 127.0.0.1, runs the whole workspace's tests, and stops the stand-ins
# whatever happens. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. scripts/target-dir.sh
# The shared target folder keeps every build's outputs: each feature set, dependency version
# and test binary gets files of its own (DataFusion's library alone is a few hundred MB), and
# nothing removes them, so a machine that runs this often fills its disk. Outputs not read for
# three days go now, release ones (the benchmark's, slow to build) after a week (access times
# are kept to the day: relatime). When the disk is short of SILT_MIN_FREE_GB (15), the
# incremental caches go before the build, and after a build that succeeded every output in
# debug/deps it did not use. Cargo rebuilds whatever is wanted.
min_free_gb=${SILT_MIN_FREE_GB:-15}
low_disk() {
  local avail
  avail=$(df -Pk "$CARGO_TARGET_DIR" 2>/dev/null | awk 'NR == 2 { print $4 }')
  [ -n "$avail" ] && [ "$avail" -lt $((min_free_gb * 1024 * 1024)) ]
}
if [ -d "$CARGO_TARGET_DIR" ]; then
  for kind in debug release; do
    days=$([ "$kind" = debug ] && echo 2 || echo 6)
    [ -d "$CARGO_TARGET_DIR/$kind/deps" ] &&
      { find "$CARGO_TARGET_DIR/$kind/deps" -maxdepth 1 -type f -atime +"$days" -delete 2>/dev/null || true; }
    if low_disk; then
      echo "== under $min_free_gb GB free: removing $CARGO_TARGET_DIR/$kind/incremental" >&2
      rm -rf "${CARGO_TARGET_DIR:?}/$kind/incremental"
    fi
  done
fi
# Keeps in debug/deps only the outputs named in a build's JSON messages (read on stdin), once
# the build says it succeeded (a failed one has not named everything it uses).
keep_only_built() {
  python3 -c '
import json, os, re, sys
deps = sys.argv[1]
used = set()
built = False
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    built = built or (m.get("reason") == "build-finished" and m.get("success"))
    if m.get("reason") != "compiler-artifact":
        continue
    for f in m.get("filenames", []) + [m.get("executable") or ""]:
        h = re.search(r"-([0-9a-f]{16})(\.[a-z]+)?$", os.path.basename(f))
        if h:
            used.add(h.group(1))
if not built:
    sys.exit(0)
freed = 0
for name in os.listdir(deps):
    path = os.path.join(deps, name)
    h = re.search(r"-([0-9a-f]{16})(\.|$)", name)
    # Object files left behind by links that did not finish belong to no build.
    if h and (h.group(1) not in used or name.endswith(".rcgu.o")) and os.path.isfile(path):
        freed += os.path.getsize(path)
        os.remove(path)
print(f"== removed {freed / 1e9:.1f} GB of outputs this build does not use", file=sys.stderr)
' "$CARGO_TARGET_DIR/debug/deps"
}
cache=${SILT_STANDINS_DIR:-$HOME/.cache/silt-standins}
mkdir -p "$cache"
logs=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # name url tries
  for _ in $(seq 1 "$3"); do
    if curl -s -o /dev/null "$2"; then return 0; fi
    sleep 0.2
  done
  echo "error: $1 did not answer at $2; its log:" >&2
  cat "$logs/$1.log" >&2 || true
  exit 1
}

echo "== installing stand-ins into $cache"
if [ ! -x "$cache/venv/bin/moto_server" ] || ! "$cache/venv/bin/python" -c 'import duckdb, pyarrow, confluent_kafka.schema_registry.avro' 2>/dev/null; then
  python3 -m venv "$cache/venv"
  # moto is the S3 (and UpdateShardCount) stand-in; DuckDB and pyarrow read the lake as
  # outside tools do; Confluent's client registers and frames records as outside producers do.
  "$cache/venv/bin/pip" install --quiet 'moto[s3]==5.2.5' flask flask-cors 'duckdb==1.4.2' 'pyarrow==22.0.0' \
    'confluent-kafka[avro,schemaregistry]==2.16.1'
fi
if [ ! -d "$cache/node/node_modules/kinesalite" ] || ! cmp -s scripts/stand-ins/package.json "$cache/node/package.json"; then
  mkdir -p "$cache/node"
  cp scripts/stand-ins/package.json "$cache/node/package.json"
  (cd "$cache/node" && npm install --silent --no-audit --no-fund >/dev/null)
fi
cp scripts/stand-ins/kinesalite.js "$cache/node/kinesalite.js"

s3_port=$(free_port)
kinesis_port=$(free_port)
echo "== starting moto (S3) on 127.0.0.1:$s3_port and kinesalite (Kinesis) on 127.0.0.1:$kinesis_port"
"$cache/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$logs/moto.log" 2>&1 &
pids+=($!)
(cd "$cache/node" && exec node kinesalite.js "$kinesis_port") >"$logs/kinesalite.log" 2>&1 &
pids+=($!)
wait_for moto "http://127.0.0.1:$s3_port/moto-api/" 150
wait_for kinesalite "http://127.0.0.1:$kinesis_port/" 150

export SILT_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export AWS_ENDPOINT_URL_S3="$SILT_S3_ENDPOINT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
curl -sf -X PUT "$SILT_S3_ENDPOINT/silt-test" >/dev/null
export SILT_KINESIS_ENDPOINT="http://127.0.0.1:$kinesis_port"
export SILT_REQUIRE_STAND_INS=1
export SILT_PYTHON="$cache/venv/bin/python"
export SILT_TESTDATA=${SILT_TESTDATA:-$root/../shared/testdata}

echo "== building"
if low_disk; then
  cargo build --workspace --all-targets --message-format=json-render-diagnostics | keep_only_built
else
  cargo build --workspace --all-targets
fi
echo "== testing"
cargo test --workspace "$@"
