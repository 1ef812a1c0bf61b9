#!/usr/bin/env bash
# The Nix checks that run without nixpkgs (see nix/README.md for what runs
# only where nixpkgs is available). Called from CI as root:
#
#   nix/tests/run.sh
#
# 1. installs Nix 2.8 from apt (`nix-bin`) when it is missing;
# 2. `nix-instantiate --parse` on every .nix file, and the stub's own tests
#    (nix/stub-nixpkgs/tests.nix);
# 3. `nix flake metadata` reads flake.lock offline, pinned as nix-pins.md says;
# 4. evaluates the flake with nix/stub-nixpkgs in place of nixpkgs: the
#    module's expectations and its drift check against the shipped unit
#    (nix/eval/module-eval.nix), then every package, app, shell and check;
# 5. runs `soong-daemon check-config` on the generated configs (the binary
#    from target/, or $SOONG_DAEMON, or built here);
#    then runs that daemon with the minimal config against lambda-sim: it
#    finds its instance by name and terminates it on POST /shutdown;
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

step "the stub nixpkgs behaves as nixpkgs does where the module relies on it"
broken=$(nix-instantiate --eval --strict --json nix/stub-nixpkgs/tests.nix 2>/dev/null) || fail "nix/stub-nixpkgs/tests.nix does not evaluate"
[ "$broken" = "[]" ] || fail "the stub differs from nixpkgs: $broken"
echo ok

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step "flake.lock is read offline and pins nixpkgs"
nix flake metadata --json "$root" >"$work/metadata.json" || fail "nix flake metadata cannot read flake.lock offline"
nix-instantiate --eval --strict --json -E '
  let
    node = (builtins.fromJSON (builtins.readFile '"$work/metadata.json"')).locks.nodes.nixpkgs;
    pinned = {
      rev = "25f538306313eae3927264466c70d7001dcea1df";
      narHash = "sha256-ZsIrKmhp4vbBXoXXmR/tBXA/UCsAQiJL9vsgZEduhVY=";
      original = { owner = "NixOS"; ref = "nixos-25.11"; repo = "nixpkgs"; type = "github"; };
    };
  in
  if node.locked.rev == pinned.rev && node.locked.narHash == pinned.narHash && node.original == pinned.original
  then "ok: nixpkgs ${node.original.ref} at ${node.locked.rev}"
  else throw "flake.lock does not hold the pin of nix-pins.md: ${builtins.toJSON node}"' | tr -d '"' || fail "flake.lock"

snapshot() { # copy the tracked and untracked, non-ignored files to $1
  mkdir -p "$1"
  git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$1"
}
snapshot "$work/src"
stub=(--override-input nixpkgs "path:$work/src/nix/stub-nixpkgs" --no-write-lock-file)
# Runs a command, showing its stderr (Nix's warnings about the overridden
# input, say) only when it fails.
quiet() { "$@" 2>"$work/stderr" || { cat "$work/stderr" >&2; fail "$*"; }; }
evaljson() { quiet nix eval --json "path:$1#$2" --override-input nixpkgs "path:$1/nix/stub-nixpkgs" --no-write-lock-file; }

step "the NixOS module, evaluated with the stub nixpkgs (nix/eval/module-eval.nix)"
result=checks.x86_64-linux.module-eval.passthru.result
quiet nix eval --raw "path:$work/src#$result.report" "${stub[@]}"
[ "$(quiet nix eval --json "path:$work/src#$result.failures" "${stub[@]}")" = "[]" ] || fail "broken expectations above"

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
  quiet nix eval --raw "path:$work/src#$result.scenarios.$scenario.configText" "${stub[@]}" >"$work/$scenario.yaml"
  "$daemon" check-config "$work/$scenario.yaml" >/dev/null || fail "soong-daemon check-config refuses the $scenario config"
  echo "ok: $scenario"
done

step "a generated config runs the real daemon against lambda-sim"
# The module's config, with only what is host-specific changed: the
# credential directory and state directory (no systemd here), the API URL
# (the simulator) and the listen port. The daemon must find its instance by
# name with the API key from the credential file, and terminate it.
sim=${LAMBDA_SIM:-target/debug/lambda-sim}
[ -x "$sim" ] || { echo "building lambda-sim"; cargo build --quiet --locked -p lambda-sim; sim=target/debug/lambda-sim; }
"$sim" --listen 127.0.0.1:0 --no-rate-limit --boot-delay 1s >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening on ' "$work/sim.out" && break; sleep 0.1; done
sim_url=$(sed -n 's/^listening on //p' "$work/sim.out")
[ -n "$sim_url" ] || { cat "$work/sim.err" >&2; fail "lambda-sim did not start"; }
curl -sf -u sim-api-key: -X POST -H 'content-type: application/json' "$sim_url/api/v1/instance-operations/launch" \
  -d '{"region_name":"us-west-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["default"],"name":"soong-eval"}' >/dev/null ||
  fail "cannot launch an instance in lambda-sim"
port=
for _ in $(seq 20); do
  candidate=$((20000 + RANDOM % 20000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null || { port=$candidate; break; }
done
[ -n "$port" ] || fail "no free port"
mkdir -p "$work/credentials" "$work/state"
printf sim-api-key >"$work/credentials/lambda-api-key"
printf run-sh-token >"$work/credentials/token"
chmod 600 "$work/credentials/"*
sed -e "s|/run/credentials/soong-daemon.service|$work/credentials|" -e "s|/var/lib/soong-daemon|$work/state|" \
  -e "s|https://cloud.lambda.ai/api/v1|$sim_url/api/v1|" -e "s|127.0.0.1:8080|127.0.0.1:$port|" \
  "$work/minimal.yaml" >"$work/run.yaml"
"$daemon" --config "$work/run.yaml" >"$work/daemon.out" 2>"$work/daemon.err" &
pids+=($!)
daemon_url=http://127.0.0.1:$port
waitfor() { # WHAT COMMAND...: retries for 20 s
  local what=$1
  shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  cat "$work/daemon.err" >&2
  fail "$what"
}
waitfor "the daemon does not answer /health" curl -sf "$daemon_url/health"
echo "ok: /health"
resolved() { curl -sf -H 'Authorization: Bearer run-sh-token' "$daemon_url/status" | grep -q '"instance_id":"[0-9a-f]'; }
waitfor "the daemon did not find its instance through the API" resolved
echo "ok: found its instance by name with the API key credential"
curl -sf -X POST -H 'Authorization: Bearer run-sh-token' -H 'content-type: application/json' \
  -d '{"reason":"nix/tests/run.sh"}' "$daemon_url/shutdown" >/dev/null || fail "POST /shutdown"
gone() { curl -sf -u sim-api-key: "$sim_url/api/v1/instances" | grep -Eq '"name":"soong-eval".*"status":"(terminating|terminated)"|"status":"(terminating|terminated)".*"name":"soong-eval"'; }
waitfor "the instance was not terminated" gone
echo "ok: POST /shutdown terminated the instance in lambda-sim"

step "every flake output evaluates, for both systems"
# Each output is checked by a Nix function given to --apply, which throws
# the reason on a mismatch.
output() { # ATTR APPLY
  quiet nix eval --raw "path:$work/src#$1" "${stub[@]}" --apply "$2"
  echo
}
for system in x86_64-linux aarch64-linux; do
  output "packages.$system" '
    packages:
    let
      built = name:
        let p = packages.${name}; in
        p.pname == name && p.cargoBuildFlags == [ "-p" name ] && p.meta.mainProgram == name
        && baseNameOf (toString p.cargoLock.lockFile) == "Cargo.lock";
      bad = builtins.filter (name: !(built name)) [ "soong" "soong-daemon" "lambda-sim" ];
    in
    if bad != [ ] then throw "not built from Cargo.lock with -p NAME: ${toString bad}"
    else if packages.default.pname != "soong" then throw "packages.default is not soong"
    else "ok: packages.'"$system"': ${toString (builtins.attrNames packages)}"'
  output "apps.$system.soong" '
    app:
    if app.type == "app" && builtins.match "/nix/store/[^/]+-soong-[^/]+/bin/soong" app.program != null
    then "ok: apps.'"$system"'.soong runs ${app.program}"
    else throw "apps.soong does not run the soong package: ${app.program}"'
  output "checks.$system" '
    checks:
    let
      names = builtins.attrNames checks;
      missing = builtins.filter (c: !(checks ? ${c})) [ "soong-daemon" "module-eval" "package-soong" "package-soong-daemon" "package-lambda-sim" ];
    in
    if missing != [ ] then throw "checks lack ${toString missing}"
    else "ok: checks.'"$system"': ${toString names}"'
  output "devShells.$system.default" 'shell: "ok: devShells.'"$system"'.default (${shell.name})"'
done
output nixosModules.default 'module: if builtins.isFunction module then "ok: nixosModules.default" else throw "not a module function"'

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
