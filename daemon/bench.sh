#!/usr/bin/env bash
# Benchmarks of soong-daemon, printed with ratios against DESIGN.md §5.
# Not a test: it never fails on slow numbers, only on broken setup.
#
#   daemon/bench.sh            # all of it (about a minute on 2 cores)
#   RUNS=10 daemon/bench.sh    # more deadline -> terminate samples
#
# Measures, on loopback only, with lambda-sim as the cloud:
#   1. idle RSS of the daemon             (target < 8 MiB; Flask daemon 37.6 MiB)
#   2. GET /health requests/s with wrk    (target > 30x the Flask daemon's 1.5k req/s)
#   3. delay from the lease deadline to the terminate call, read from the
#      simulator's request log            (target < 2 s; Python soong 60 s, SkyPilot ~80 s)
# The cost of one activity sample with 10k sockets is the activity
# sampler's own bench: `cargo bench -p soong-daemon --bench activity_sample`.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
WRK_SECONDS="${WRK_SECONDS:-5}"

cargo build --release -q -p soong-daemon -p lambda-sim
BIN=target/release
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The simulator: rate limits off (the daemon paces itself anyway), fast boot.
"$BIN/lambda-sim" --no-rate-limit --boot-delay 100ms >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$WORK/sim.out" && break; sleep 0.05; done
SIM="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$WORK/sim.out" | head -1)"
[ -n "$SIM" ] || { echo "lambda-sim did not start" >&2; cat "$WORK/sim.err" >&2; exit 1; }

new_instance() { # name -> id
    curl -fsS -X POST "$SIM/sim/instances" -H 'content-type: application/json' \
        -d "{\"name\": \"$1\"}" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("id") or d["data"]["id"])'
}

# config NAME ID PORT LEASE -> path
config() {
    local dir="$WORK/$1"; mkdir -p "$dir"
    cat >"$dir/daemon.yaml" <<YAML
listen: 127.0.0.1:$3
token: bench-token
lambda:
  api_url: $SIM/api/v1
  api_key: sim-api-key
instance:
  id: $2
  name: $1
  launched_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)
policy:
  idle_timeout: 30m
  lease: $4
  max_lease: 8h
  hard_timeout: 8h
activity:
  ports: [8000]
  terminals: true
  sample_interval: 2s
state_dir: $dir/state
YAML
    echo "$dir/daemon.yaml"
}

wait_healthy() { for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "daemon on :$1 never became healthy" >&2; return 1; }

ratio() { python3 -c "print(f'{$1/$2:.1f}')"; }

echo "soong-daemon benchmarks ($(nproc) cores, $(uname -r))"
echo

# 1 + 2: one daemon with the default activity sampling on, idle.
PORT="$(free_port)"
ID="$(new_instance bench-idle)"
CFG="$(config bench-idle "$ID" "$PORT" 4h)"
SOONG_LOG=warn "$BIN/soong-daemon" --config "$CFG" 2>"$WORK/idle.log" &
DAEMON=$!; PIDS+=("$DAEMON")
wait_healthy "$PORT"
sleep 3  # a few samples, one identity lookup: the steady idle state
RSS_KB="$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")"
RSS_MIB="$(python3 -c "print(f'{$RSS_KB/1024:.1f}')")"
echo "1. idle RSS:                 ${RSS_MIB} MiB   (target < 8 MiB; Flask daemon 37.6 MiB: $(ratio 37.6 "$RSS_MIB")x smaller)"

if command -v wrk >/dev/null; then
    WRK_OUT="$(wrk -t1 -c32 -d"${WRK_SECONDS}s" "http://127.0.0.1:$PORT/health")"
    RPS="$(awk '/Requests\/sec/ {print $2}' <<<"$WRK_OUT")"
    LAT="$(awk '/Latency/ {print $2; exit}' <<<"$WRK_OUT")"
    echo "2. /health throughput:       ${RPS%.*} req/s, mean latency $LAT   (wrk -t1 -c32, ${WRK_SECONDS}s; Flask 1.5k req/s: $(ratio "$RPS" 1500)x, target > 30x)"
    RSS_KB="$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")"
    echo "   RSS after the load:       $(python3 -c "print(f'{$RSS_KB/1024:.1f}')") MiB"
else
    echo "2. /health throughput:       skipped: install wrk (apt-get install wrk)"
fi
kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true

# 3: lease deadline -> terminate call, RUNS times, from the simulator's log.
cat >"$WORK/delay.py" <<'PY'
import datetime, json, sys
def t(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
records = json.load(sys.stdin)
if isinstance(records, dict):
    records = records.get("data", records.get("requests", []))
deadline, iid = sys.argv[1], sys.argv[2]
for r in records:
    if r["method"] == "POST" and r["path"].endswith("/instance-operations/terminate") \
            and iid in json.dumps(r.get("request")):
        print("%.3f" % (t(r["at"]) - t(deadline)).total_seconds())
        break
PY
DELAYS=()
for run in $(seq "$RUNS"); do
    PORT="$(free_port)"
    NAME="bench-lease-$run"
    ID="$(new_instance "$NAME")"
    CFG="$(config "$NAME" "$ID" "$PORT" 3s)"
    SOONG_LOG=warn "$BIN/soong-daemon" --config "$CFG" 2>"$WORK/$NAME.log" &
    DAEMON=$!; PIDS+=("$DAEMON")
    wait_healthy "$PORT"
    DEADLINE="$(curl -fsS -H 'authorization: Bearer bench-token' "http://127.0.0.1:$PORT/status" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["lease_deadline"])')"
    for _ in $(seq 100); do
        DELAY="$(curl -fsS "$SIM/sim/requests" | python3 "$WORK/delay.py" "$DEADLINE" "$ID")"
        [ -n "$DELAY" ] && break
        sleep 0.1
    done
    kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
    [ -n "$DELAY" ] || { echo "run $run: no terminate call seen" >&2; continue; }
    DELAYS+=("$DELAY")
done
python3 - "${DELAYS[@]}" <<'PY'
import statistics, sys
d = sorted(float(x) for x in sys.argv[1:])
if not d:
    print("3. deadline -> terminate:    no samples"); sys.exit()
med = statistics.median(d)
print(f"3. deadline -> terminate:    median {med*1000:.0f} ms, max {d[-1]*1000:.0f} ms over {len(d)} runs"
      f"   (target < 2 s; Python soong 60 s: {60/max(med,1e-3):.0f}x faster; SkyPilot ~80 s)")
PY
