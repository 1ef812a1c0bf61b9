#!/usr/bin/env bash
# Every system test of soong, as root on a fresh Debian machine: installs
# what the tests need (apt), builds the daemon, then runs each suite and
# prints one summary line `N passed, N failed`. Exit status non-zero if any
# check failed or any suite could not run. See tests/system/README.md.
#
#   tests/system/run-all.sh                 all suites
#   tests/system/run-all.sh unit ansible    some (lint, unit, daemon, cloud-init, ansible)
#   SOONG_SKIP_INSTALL=1 ...                skip the apt step
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

[ "$(id -u)" = 0 ] || { echo "error: the system tests run as root (debootstrap, systemd-nspawn, mounts)" >&2; exit 1; }

if [ "${SOONG_SKIP_INSTALL:-0}" != 1 ]; then
  packages=(debootstrap systemd-container util-linux iproute2 python3 python3-venv python3-yaml curl ca-certificates openssh-client nftables shellcheck)
  missing=()
  for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

declare -A suites=(
  [lint]=tests/system/test-lint.sh
  [unit]=tests/system/test-unit.sh
  [daemon]=tests/system/daemon.sh
  [cloud-init]=cloud-init/tests/run.sh
  [ansible]=ansible/tests/run.sh
)
order=(lint unit daemon cloud-init ansible)
(($#)) && order=("$@")

# Build the image once, up front, so its time is not charged to one suite.
start=$SECONDS
# shellcheck source=tests/system/lib.sh
(source tests/system/lib.sh && soong_image_ensure && soong_daemon_binary >/dev/null)
echo "==> image and daemon ready ($((SECONDS - start))s)"

total_passed=0
total_failed=0
broken=()
for name in "${order[@]}"; do
  script=${suites[$name]:-}
  [ -n "$script" ] || { echo "error: unknown suite \`$name\` (lint, unit, daemon, cloud-init, ansible)" >&2; exit 2; }
  echo
  echo "==> $name ($script)"
  log=$(mktemp)
  start=$SECONDS
  set +e
  "$script" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  summary=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1 || true)
  suite_passed=$(grep -c '^ok - ' "$log" || true)
  suite_failed=$(grep -c '^not ok - ' "$log" || true)
  rm -f "$log"
  total_passed=$((total_passed + suite_passed))
  total_failed=$((total_failed + suite_failed))
  echo "==> $name: ${summary:-no summary} (exit $status, $((SECONDS - start))s)"
  if [ "$status" != 0 ] && [ "$suite_failed" = 0 ]; then
    # The suite died before it could say what failed: count that as a failure.
    total_failed=$((total_failed + 1))
    broken+=("$name")
  elif [ "$status" != 0 ]; then
    broken+=("$name")
  fi
done

echo
((${#broken[@]} == 0)) || echo "failed suites: ${broken[*]}"
echo "system: $total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ] && ((${#broken[@]} == 0))
