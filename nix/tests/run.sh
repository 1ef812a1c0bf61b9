#!/usr/bin/env bash
# The Nix checks that run without nixpkgs (see nix/README.md for what runs
# only where nixpkgs is available). Called from CI as root:
#
#   nix/tests/run.sh
#
# 1. installs Nix 2.8 from apt (`nix-bin`) when it is missing;
# 2. `nix-instantiate --parse` on every .nix file;
# 3. `nix flake metadata` reads flake.lock offline, pinned as nix-pins.md says;
# 4. evaluates the flake with nix/stub-nixpkgs in place of nixpkgs: the
#    module's expectations and its drift check against the shipped unit
#    (nix/eval/module-eval.nix), then every package, app, shell and check;
# 5. runs `soong-daemon check-config` on the generated configs (the binary
#    from target/, or $SOONG_DAEMON, or built here);
# 6. proves the drift check can fail, on a copy with a changed unit;
# 7. `deadnix --fail` and `nixpkgs-fmt --check` (installed with
#    `cargo install --locked` when missing: about 3 minutes on 2 cores).
#
# The flake is evaluated from a copy of the files git tracks plus untracked,
# non-ignored ones (what CI sees once they are committed), so it runs without
# `git add`; it warns about Nix files git does not track yet.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

export NIX_CONFIG=$'experimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false\nsubstituters =\nwarn-dirty = false'

step "nix"
if ! command -v nix >/dev/null || ! command -v nix-instantiate >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "nix is missing; run as root to install it with apt (nix-bin)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nix-bin >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nix-bin >/dev/null; }
fi
nix --version

mapfile -t nix_files < <(git ls-files -co --exclude-standard -- '*.nix' | while read -r f; do [ -e "$f" ] && echo "$f"; done)
untracked=$(git ls-files -o --exclude-standard -- '*.nix' flake.lock)
if [ -n "$untracked" ]; then
  printf 'warning: not tracked by git, so invisible to the flake until added:\n%s\n' "$untracked" >&2
fi

step "parse ${#nix_files[@]} .nix files"
for f in "${nix_files[@]}"; do
  nix-instantiate --parse "$f" >/dev/null || fail "$f does not parse"
done
echo ok

step "flake.lock is read offline and pins nixpkgs"
metadata=$(nix flake metadata --json "$root") || fail "nix flake metadata cannot read flake.lock offline"
python3 - "$metadata" <<'EOF'
import json, sys
meta = json.loads(sys.argv[1])
node = meta["locks"]["nodes"]["nixpkgs"]
assert node["locked"]["rev"] == "25f538306313eae3927264466c70d7001dcea1df", node["locked"]
assert node["locked"]["narHash"] == "sha256-ZsIrKmhp4vbBXoXXmR/tBXA/UCsAQiJL9vsgZEduhVY=", node["locked"]
assert node["original"] == {"owner": "NixOS", "ref": "nixos-25.11", "repo": "nixpkgs", "type": "github"}, node["original"]
print("ok: nixpkgs", node["original"]["ref"], "at", node["locked"]["rev"][:12])
EOF

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
snapshot() { # copy the tracked and untracked, non-ignored files to $1
  mkdir -p "$1"
  git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$1"
}
snapshot "$work/src"
stub=(--override-input nixpkgs "path:$work/src/nix/stub-nixpkgs" --no-write-lock-file)
evaljson() { nix eval --json "path:$1#$2" --override-input nixpkgs "path:$1/nix/stub-nixpkgs" --no-write-lock-file 2>"$work/stderr" ||
  { cat "$work/stderr" >&2; fail "nix eval $2"; }; }

step "the NixOS module, evaluated with the stub nixpkgs (nix/eval/module-eval.nix)"
evaljson "$work/src" checks.x86_64-linux.module-eval.passthru.result >"$work/result.json"
python3 - "$work/result.json" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
for e in result["expectations"]:
    print(("ok   " if e["ok"] else "FAIL ") + e["name"])
if result["drift"] and result["drift"]["mismatches"]:
    print("\ndirectives that differ from systemd/soong-daemon.service.in:")
    for m in result["drift"]["mismatches"]:
        print(f'  {m["directive"]}: shipped {m["shipped"]!r}, module {m["module"]!r}')
if not result["shippedUnitExists"]:
    print("\nsystemd/soong-daemon.service.in is not in the flake's source")
sys.exit(1 if result["failures"] else 0)
EOF

step "the generated configs pass the daemon's own check-config"
daemon=${SOONG_DAEMON:-}
if [ -z "$daemon" ]; then
  for candidate in target/debug/soong-daemon target/release/soong-daemon; do
    [ -x "$candidate" ] && daemon=$candidate && break
  done
fi
if [ -z "$daemon" ]; then
  echo "building soong-daemon (set SOONG_DAEMON to use a built one)"
  cargo build --quiet --locked -p soong-daemon
  daemon=target/debug/soong-daemon
fi
for scenario in minimal full settingsWin stateDirElsewhere; do
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["scenarios"][sys.argv[2]]["configText"], end="")' \
    "$work/result.json" "$scenario" >"$work/$scenario.yaml"
  "$daemon" check-config "$work/$scenario.yaml" >/dev/null || fail "soong-daemon check-config refuses the $scenario config"
  echo "ok: $scenario"
done

step "every flake output evaluates, for both systems"
for system in x86_64-linux aarch64-linux; do
  evaljson "$work/src" "packages.$system" >/dev/null
  out=$(nix eval --json "path:$work/src#packages.$system" "${stub[@]}" --apply '
    ps: builtins.mapAttrs (_: p: { inherit (p) pname cargoBuildFlags; lock = toString p.cargoLock.lockFile; main = p.meta.mainProgram; }) ps' 2>/dev/null)
  app=$(nix eval --raw "path:$work/src#apps.$system.soong.program" "${stub[@]}" 2>/dev/null)
  checks=$(nix eval --json "path:$work/src#checks.$system" "${stub[@]}" --apply builtins.attrNames 2>/dev/null)
  shell=$(nix eval --raw "path:$work/src#devShells.$system.default.name" "${stub[@]}" 2>/dev/null)
  python3 - "$system" "$out" "$app" "$checks" "$shell" <<'EOF'
import json, sys
system, packages, app, checks, shell = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
for name in ["soong", "soong-daemon", "lambda-sim"]:
    p = packages[name]
    assert p["pname"] == name and p["cargoBuildFlags"] == ["-p", name] and p["main"] == name, p
    assert p["lock"].endswith("/Cargo.lock"), p
assert packages["default"]["pname"] == "soong", packages["default"]
assert app.endswith("-soong-0.1.0/bin/soong") or app.endswith("/bin/soong"), app
assert "soong-daemon" in checks and "module-eval" in checks, checks
assert {"package-soong", "package-soong-daemon", "package-lambda-sim"} <= set(checks), checks
print(f"ok: {system}: packages {sorted(packages)}, apps.soong -> {app.split('/', 4)[-1]}, checks {checks}, devShell {shell}")
EOF
done
nix eval "path:$work/src#nixosModules.default" "${stub[@]}" --apply 'm: builtins.isFunction m' 2>/dev/null | grep -qx true ||
  fail "nixosModules.default is not a module function"
echo "ok: nixosModules.default"

step "the drift check fails when the shipped unit changes"
if [ -e systemd/soong-daemon.service.in ]; then
  for change in 's/^WatchdogSec=.*/WatchdogSec=31s/' \
                's/^SystemCallFilter=~@privileged @resources$/SystemCallFilter=~@privileged\nSystemCallFilter=@resources/' \
                's/^ProtectProc=invisible$/ProtectProc=noaccess/' \
                '/^PrivateIPC=/d' \
                's/^LoadCredential=worker-token:.*/LoadCredential=heartbeat:@credentials_dir@\/heartbeat/'; do
    rm -rf "$work/mutant" && snapshot "$work/mutant"
    sed -i -e "$change" "$work/mutant/systemd/soong-daemon.service.in"
    cmp -s systemd/soong-daemon.service.in "$work/mutant/systemd/soong-daemon.service.in" && fail "the change '$change' changed nothing"
    evaljson "$work/mutant" checks.x86_64-linux.module-eval.passthru.result.drift.mismatches >"$work/mismatches.json"
    [ "$(cat "$work/mismatches.json")" != "[]" ] || fail "the drift check missed: $change"
    echo "ok: caught $change"
  done
else
  fail "systemd/soong-daemon.service.in is missing"
fi

step "deadnix and nixpkgs-fmt"
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v deadnix >/dev/null || ! command -v nixpkgs-fmt >/dev/null; then
  echo "installing deadnix and nixpkgs-fmt from crates.io (about 3 minutes on 2 cores)"
  cargo install --locked --quiet deadnix nixpkgs-fmt
fi
deadnix --fail "${nix_files[@]}"
nixpkgs-fmt --check "${nix_files[@]}"
echo ok

printf '\nall Nix checks passed (the VM test and real builds need nixpkgs: nix/README.md)\n'
