#!/usr/bin/env bash
# Runs ShellCheck (warnings and errors) over the provisioning shell: the test
# scripts, systemd/render.sh, and the scripts the user-data installs on an
# instance (extracted from cloud-init/user-data.yaml.tmpl, POSIX sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
passed=0
failed=0
lint() { # lint DESCRIPTION SHELLCHECK-ARGS...
  local description=$1 out
  shift
  if out=$(shellcheck -S warning "$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok - shellcheck: $description"
  else
    failed=$((failed + 1))
    echo "not ok - shellcheck: $description"
    printf '%s\n' "$out"
  fi
}
command -v shellcheck >/dev/null || { echo "not ok - shellcheck is not installed (tests/system/run-all.sh installs it)"; echo "lint: 0 passed, 1 failed"; exit 1; }

for script in tests/system/lib.sh tests/system/test-unit.sh tests/system/test-lint.sh tests/system/run-all.sh tests/system/daemon.sh \
  cloud-init/tests/run.sh cloud-init/update-unit.sh ansible/tests/run.sh systemd/render.sh; do
  lint "$script" -x "$script"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Debian's python3, with python3-yaml (run-all.sh installs it).
/usr/bin/python3 - "$work" <<'PY'
import pathlib, sys, yaml
work = pathlib.Path(sys.argv[1])
data = yaml.safe_load(open("cloud-init/user-data.yaml.tmpl"))
for f in data["write_files"]:
    if f.get("permissions") == "0755":
        (work / pathlib.Path(f["path"]).name).write_text(f["content"])
PY
for script in "$work"/*; do
  lint "cloud-init/user-data.yaml.tmpl: $(basename "$script")" -s sh "$script"
done
for template in ansible/roles/sglang/templates/install-sglang.j2 ansible/roles/sglang/templates/sglang-launch.j2; do
  sed 's/{{ *[a-z_]* *}}/x/g' "$template" >"$work/$(basename "$template" .j2).ansible"
  lint "$template" -s sh "$work/$(basename "$template" .j2).ansible"
done
echo "lint: $passed passed, $failed failed"
[ "$failed" = 0 ]
