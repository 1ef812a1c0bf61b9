#!/usr/bin/env bash
# Start-up cost of `soong --help` and `soong status` (against lambda-sim),
# wall time and peak RSS, against DESIGN.md §5's targets (< 5 ms and
# < 10 MiB for help; status is dominated by its API call and is reported,
# not judged). A report, not a test: it never fails on slow numbers.
#
#   cli/benches/startup.sh [RUNS]
set -euo pipefail
runs=${1:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p soong -p lambda-sim
bin=$root/target/release
work=$(mktemp -d)
sim_pid=
cleanup() {
    [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/lambda-sim" --no-rate-limit >"$work/sim.out" 2>/dev/null &
sim_pid=$!
for _ in $(seq 50); do
    grep -q listening "$work/sim.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/sim.out")
cat >"$work/config.yaml" <<YAML
lambda:
  api_key: sim-api-key
  api_url: $url/api/v1
status_daemon:
  token: bench-token
  access: direct
YAML

# One measurement: "<seconds> <max RSS KiB>": wall time from the clock in
# nanoseconds (GNU time's 10 ms resolution is too coarse), peak RSS from
# GNU time.
measure() {
    local start end kib
    start=$(date +%s%N)
    kib=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1)
    end=$(date +%s%N)
    echo "$(awk -v s="$start" -v e="$end" 'BEGIN { print (e - s) / 1e9 }') $kib"
}

report() {
    local label=$1 target_ms=$2 target_kib=$3
    shift 3
    local total=0 peak=0 line secs kib
    for _ in $(seq "$runs"); do
        line=$(measure "$@")
        secs=${line% *}
        kib=${line#* }
        total=$(awk -v a="$total" -v b="$secs" 'BEGIN { print a + b }')
        ((kib > peak)) && peak=$kib
    done
    awk -v t="$total" -v n="$runs" -v p="$peak" -v l="$label" -v tm="$target_ms" -v tk="$target_kib" 'BEGIN {
        ms = t / n * 1000
        printf "%-14s %7.1f ms (target < %s ms)   peak RSS %6.1f MiB (target < %.0f MiB)\n", l, ms, tm, p / 1024, tk / 1024
    }'
}

echo "soong start-up, mean of $runs runs (wall time includes starting GNU time, ~1 ms):"
report "--help" 5 10240 "$bin/soong" --help
report "status (sim)" "-" 10240 env SOONG_CONFIG="$work/config.yaml" "$bin/soong" status
echo "reference: Python soong 225 ms / 47 MiB; SkyPilot 1.4 s / 157 MiB; dstack 0.7 s / 98 MiB"
