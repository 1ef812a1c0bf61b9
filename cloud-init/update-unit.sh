#!/usr/bin/env bash
# Copies the rendered systemd unit (systemd/render.sh, default paths) into
# user-data.yaml.tmpl, so the template carries the one unit definition.
# cloud-init/tests/run.sh fails when the two differ and names this script.
#
#   cloud-init/update-unit.sh           rewrite the template in place
#   cloud-init/update-unit.sh --check   exit 1 if it is out of date
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 - "$here" "${1:-}" <<'PY'
import pathlib, subprocess, sys

here = pathlib.Path(sys.argv[1])
check = sys.argv[2] == "--check"
template = here / "user-data.yaml.tmpl"
unit = subprocess.run([str(here.parent / "systemd" / "render.sh")], check=True,
                      capture_output=True, text=True).stdout
indented = "".join(("      " + line if line.strip() else "\n") for line in unit.splitlines(keepends=True))
text = template.read_text()
start_marker = "  - path: /etc/systemd/system/soong-daemon.service\n    owner: root:root\n    permissions: '0644'\n    content: |\n"
start = text.index(start_marker) + len(start_marker)
end = text.index("\n  # --- SGLang", start)
# The block runs to the blank line before the next section.
current = text[start:end].rstrip("\n") + "\n"
if current == indented:
    sys.exit(0)
if check:
    print("error: the unit in cloud-init/user-data.yaml.tmpl differs from systemd/soong-daemon.service.in\n\n"
          "hint: run `cloud-init/update-unit.sh`", file=sys.stderr)
    sys.exit(1)
template.write_text(text[:start] + indented + text[end:])
print("updated", template)
PY
