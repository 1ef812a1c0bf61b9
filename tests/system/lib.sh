# shellcheck shell=bash
# soong's system-test harness: a cached Debian bookworm debootstrap tree with
# systemd, booted per test with `systemd-nspawn --boot` on a throw-away
# overlay, commands run inside through nsenter, torn down by a trap.
#
# Source it from a bash test script (interface: tests/system/README.md):
#
#   source tests/system/lib.sh
#   soong_image_ensure                 # build or reuse the cached tree
#   soong_machine_create m1            # a private writable copy (overlay)
#   soong_machine_root m1              # -> its root directory (install files here)
#   soong_machine_boot m1              # boot it, wait until systemd is up
#   soong_machine_exec m1 systemctl is-active soong-daemon
#   soong_machine_destroy m1           # or let the EXIT trap do it
#
# The host needs debootstrap, systemd-container and util-linux; run-all.sh
# installs them. Everything here runs as root.

set -o errexit -o nounset -o pipefail

SOONG_TEST_CACHE="${SOONG_TEST_CACHE:-/var/cache/soong-test}"
SOONG_TEST_SUITE="${SOONG_TEST_SUITE:-bookworm}"
SOONG_TEST_BOOT_TIMEOUT="${SOONG_TEST_BOOT_TIMEOUT:-120}"
# Packages of the cached tree. Changing this list (or the setup version
# below) changes the cache key, so a stale tree is never reused.
# debootstrap brings the base (systemd as init); apt-get inside the tree adds
# the rest (debootstrap's own resolver cannot configure python3 packages).
SOONG_TEST_BASE_PACKAGES="systemd,systemd-sysv,dbus,ca-certificates"
SOONG_TEST_PACKAGES="${SOONG_TEST_PACKAGES:-curl iproute2 procps locales libnss-systemd python3 python3-apt python3-yaml cloud-init openssh-server openssh-client nftables less}"
_SOONG_IMAGE_SETUP_VERSION=5

# Where per-machine state lives (overlay dirs, logs, pids). One per process.
_SOONG_RUN_DIR=""
# Names of the machines this process created, for the EXIT trap.
declare -a _SOONG_MACHINES=()

# Results, one TAP-like line per check; each suite ends by printing
# `<suite>: $passed passed, $failed failed`, which run-all.sh adds up.
passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok - %s\n' "$*"; }
not_ok() { failed=$((failed + 1)); printf 'not ok - %s\n' "$*"; }
check() { # check DESCRIPTION CMD...
  local description=$1
  shift
  if "$@"; then ok "$description"; else not_ok "$description"; fi
}

soong_log() { printf '[system-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
soong_die() {
  printf '[system-test] FAIL: %s\n' "$*" >&2
  exit 1
}

# The Debian mirror apt already uses on this host (so debootstrap goes where
# the network allows), unless SOONG_TEST_MIRROR says otherwise.
soong_mirror() {
  if [ -n "${SOONG_TEST_MIRROR:-}" ]; then
    printf '%s\n' "$SOONG_TEST_MIRROR"
    return
  fi
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

_soong_image_key() {
  printf '%s\n' "$SOONG_TEST_SUITE" "$SOONG_TEST_BASE_PACKAGES" "$SOONG_TEST_PACKAGES" "$_SOONG_IMAGE_SETUP_VERSION" |
    sha256sum | cut -c1-12
}

# Prints the cached tree's path (read-only: never boot it directly).
soong_image_path() {
  printf '%s/%s-%s\n' "$SOONG_TEST_CACHE" "$SOONG_TEST_SUITE" "$(_soong_image_key)"
}

# Builds the cached tree if it is missing or incomplete. Safe to call from
# several processes at once (flock).
soong_image_ensure() {
  local image
  image=$(soong_image_path)
  [ -f "$image/.soong-image-complete" ] && return 0
  mkdir -p "$SOONG_TEST_CACHE"
  (
    flock 9
    [ -f "$image/.soong-image-complete" ] && exit 0
    local mirror tmp start
    mirror=$(soong_mirror)
    tmp=$(mktemp -d "$SOONG_TEST_CACHE/.build.XXXXXX")
    start=$SECONDS
    soong_log "debootstrap $SOONG_TEST_SUITE from $mirror into $tmp (cached as $image)"
    local log="$SOONG_TEST_CACHE/last-build.log"
    if ! debootstrap --variant=minbase --include="$SOONG_TEST_BASE_PACKAGES" \
      "$SOONG_TEST_SUITE" "$tmp" "$mirror" >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      rm -rf "$tmp"
      soong_die "debootstrap failed (log above, full log in $log)"
    fi
    printf 'deb %s %s main\n' "$mirror" "$SOONG_TEST_SUITE" >"$tmp/etc/apt/sources.list"
    # shellcheck disable=SC2086 # the package list is split on purpose
    if ! systemd-nspawn --quiet --register=no --keep-unit -D "$tmp" --setenv=DEBIAN_FRONTEND=noninteractive \
      sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $SOONG_TEST_PACKAGES && apt-get clean" \
      >>"$log" 2>&1; then
      tail -n 40 "$log" >&2
      rm -rf "$tmp"
      soong_die "installing packages into the tree failed (log above, full log in $log)"
    fi
    _soong_image_configure "$tmp"
    touch "$tmp/.soong-image-complete"
    rm -rf "$image"
    mv "$tmp" "$image"
    # Trees of older keys (another package list or setup version) go.
    local old
    for old in "$SOONG_TEST_CACHE/$SOONG_TEST_SUITE"-*; do
      [ "$old" = "$image" ] || [ ! -f "$old/.soong-image-complete" ] || rm -rf --one-file-system "$old"
    done
    soong_log "image ready in $((SECONDS - start))s"
  ) 9>"$SOONG_TEST_CACHE/.lock"
}

# Makes the tree safe to boot in the host's network namespace (the
# containers share it, so they can reach the host's loopback): nothing in
# it may reconfigure the host's interfaces or take the host's ports.
_soong_image_configure() {
  local root=$1
  printf 'soong-test\n' >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  # The host's network, not the container's: no networkd, no sshd on :22.
  local unit
  for unit in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
    ssh.service ssh.socket apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # cloud-init stays off unless a test turns it on (rm /etc/cloud/cloud-init.disabled),
  # and then never touches the network: the host's interfaces are not its to configure.
  touch "$root/etc/cloud/cloud-init.disabled"
  mkdir -p "$root/etc/cloud/cloud.cfg.d"
  cat >"$root/etc/cloud/cloud.cfg.d/90-soong-test.cfg" <<'EOF'
# soong system tests: the container shares the host's network namespace.
network: {config: disabled}
datasource_list: [NoCloud, None]
EOF
  # en_US.UTF-8 exists, as on Lambda's images (cloud-init's locale module sets it).
  sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
  systemd-nspawn --quiet --register=no --keep-unit -D "$root" locale-gen >/dev/null \
    2> >(grep -v '^Attempted to remove disk file system under' >&2)
  # Keep the journal in memory and small; no getty on the console.
  mkdir -p "$root/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$root/etc/systemd/journald.conf.d/soong-test.conf"
  ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
  # The same apt sources as the host (ansible's apt module may install).
  printf 'deb %s %s main\n' "$(soong_mirror)" "$SOONG_TEST_SUITE" >"$root/etc/apt/sources.list"
}

# Creates this process's run directory and installs the cleanup traps. Runs
# in the calling shell (never in $(...)), so the traps and the variable stay.
_soong_init_run_dir() {
  [ -z "$_SOONG_RUN_DIR" ] || return 0
  mkdir -p "$SOONG_TEST_CACHE/run"
  _SOONG_RUN_DIR=$(mktemp -d "$SOONG_TEST_CACHE/run/XXXXXX")
  trap soong_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

_soong_dir() {
  [ -n "$_SOONG_RUN_DIR" ] || soong_die "no machine was created in this shell"
  printf '%s/%s\n' "$_SOONG_RUN_DIR" "$1"
}

# soong_machine_create NAME: a writable overlay over the cached tree (a
# plain copy if the kernel has no overlayfs). Files may be put into
# "$(soong_machine_root NAME)" before booting, or between boots.
soong_machine_create() {
  local name=$1 dir image
  [[ "$name" =~ ^[a-z0-9-]+$ ]] || soong_die "machine name must match [a-z0-9-]+: $name"
  image=$(soong_image_path)
  [ -f "$image/.soong-image-complete" ] || soong_die "no image: call soong_image_ensure first"
  _soong_init_run_dir
  dir=$(_soong_dir "$name")
  [ -e "$dir" ] && soong_die "machine $name exists already"
  mkdir -p "$dir/upper" "$dir/work" "$dir/root"
  _SOONG_MACHINES+=("$name")
  if mount -t overlay overlay -o "lowerdir=$image,upperdir=$dir/upper,workdir=$dir/work" "$dir/root" 2>/dev/null; then
    echo overlay >"$dir/kind"
  else
    cp -a "$image/." "$dir/root/"
    echo copy >"$dir/kind"
  fi
  # A unique hostname, so journal lines say which machine they came from.
  printf '%s\n' "$name" >"$dir/root/etc/hostname"
}

soong_machine_root() { printf '%s/root\n' "$(_soong_dir "$1")"; }

# nspawn's machine name: unique per run, so two runs (CI and a developer, or
# two suites) never share nspawn's per-machine state in /run/systemd/nspawn.
_soong_nspawn_name() {
  local run=${_SOONG_RUN_DIR##*/}
  printf '%s-%s\n' "$1" "${run,,}"
}

# soong_machine_chroot NAME CMD...: runs CMD in the (not booted) tree.
soong_machine_chroot() {
  local name=$1
  shift
  # (nspawn's complaint about cleaning /run/systemd/nspawn on a host whose
  # /run is not a tmpfs is noise: filtered.)
  systemd-nspawn --quiet --register=no --keep-unit -D "$(soong_machine_root "$name")" \
    -M "$(_soong_nspawn_name "$name")" --hostname="$name" \
    --setenv=LANG=C.UTF-8 -- "$@" 2> >(grep -v '^Attempted to remove disk file system under' >&2)
}

# soong_machine_boot NAME [NSPAWN-ARGS...]: boots the machine in the host's
# network namespace and waits until systemd is up (running or degraded).
soong_machine_boot() {
  local name=$1 dir pid leader deadline state
  shift
  dir=$(_soong_dir "$name")
  [ -f "$dir/pid" ] && soong_die "machine $name is running already"
  # setsid: the container gets no terminal and survives nothing of ours
  # but the EXIT trap. --console=read-only, not passive: a passive console is
  # a pty nobody reads, and once cloud-init's output fills it, everything
  # writing to /dev/console (shutdown included) blocks. Its output goes to
  # console.log in the machine's directory.
  setsid systemd-nspawn --quiet --boot --register=no --keep-unit -D "$dir/root" \
    -M "$(_soong_nspawn_name "$name")" --hostname="$name" \
    --console=read-only --link-journal=no "$@" >"$dir/console.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  deadline=$((SECONDS + SOONG_TEST_BOOT_TIMEOUT))
  leader=""
  while [ -z "$leader" ]; do
    kill -0 "$pid" 2>/dev/null || {
      tail -n 30 "$dir/console.log" >&2
      soong_die "systemd-nspawn for $name exited during boot (console above)"
    }
    leader=$(_soong_find_leader "$pid") || true
    [ $SECONDS -lt $deadline ] || soong_die "machine $name: no init process after ${SOONG_TEST_BOOT_TIMEOUT}s"
    [ -n "$leader" ] || sleep 0.2
  done
  echo "$leader" >"$dir/leader"
  # Wait for the system manager to finish booting.
  while :; do
    state=$(soong_machine_exec "$name" systemctl is-system-running 2>/dev/null) || true
    case "$state" in
      running | degraded) break ;;
    esac
    [ $SECONDS -lt $deadline ] || {
      soong_machine_exec "$name" systemctl --failed --no-pager >&2 || true
      soong_die "machine $name did not finish booting in ${SOONG_TEST_BOOT_TIMEOUT}s (state: ${state:-unknown})"
    }
    sleep 0.5
  done
  soong_log "machine $name booted ($state)"
  [ "$state" = running ] || soong_machine_exec "$name" systemctl --failed --no-pager --no-legend >&2 || true
}

# The container's PID 1: nspawn's child that lives in another PID namespace.
_soong_find_leader() {
  local nspawn=$1 child own
  own=$(readlink /proc/self/ns/pid)
  for child in $(ps -o pid= --ppid "$nspawn"); do
    if [ "$(readlink "/proc/$child/ns/pid" 2>/dev/null)" != "$own" ] &&
      [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
      printf '%s\n' "$child"
      return 0
    fi
  done
  return 1
}

soong_machine_leader() { cat "$(_soong_dir "$1")/leader"; }

# soong_machine_exec NAME CMD...: runs CMD inside the booted machine (its
# mount, PID, IPC, UTS and network namespaces and root), stdin/stdout/stderr passed
# through, exit status returned. Not a unit of the container's systemd:
# use soong_machine_run for that.
soong_machine_exec() {
  local name=$1 leader
  shift
  leader=$(soong_machine_leader "$name")
  nsenter --target "$leader" --mount --uts --ipc --net --pid --root --wd=/ -- \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# soong_machine_run NAME [SYSTEMD-RUN-ARGS...] -- CMD...: runs CMD as a
# transient service of the container's own systemd (its cgroup, its
# journal), waits for it and passes its output and exit status through.
soong_machine_run() {
  local name=$1
  shift
  soong_machine_exec "$name" systemd-run --quiet --wait --pipe --collect "$@"
}

# soong_machine_wait NAME TIMEOUT CMD...: retries CMD inside the machine
# until it succeeds or TIMEOUT seconds pass (then returns 1).
soong_machine_wait() {
  local name=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until soong_machine_exec "$name" "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

# soong_machine_journal NAME [JOURNALCTL-ARGS...]
soong_machine_journal() {
  local name=$1
  shift
  soong_machine_exec "$name" journalctl --no-pager "$@"
}

# soong_machine_stop NAME: powers the machine off (the tree is kept, so it
# can be inspected or booted again).
soong_machine_stop() {
  local name=$1 dir pid
  dir=$(_soong_dir "$name")
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    # SIGTERM makes nspawn ask the container's systemd to power off.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      soong_log "machine $name did not power off in 20s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      local leader
      leader=$(cat "$dir/leader" 2>/dev/null) || true
      [ -z "$leader" ] || kill -KILL "$leader" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$dir/pid" "$dir/leader"
}

# soong_machine_destroy NAME: stops it and removes its writable layer.
soong_machine_destroy() {
  local name=$1 dir
  dir=$(_soong_dir "$name")
  [ -d "$dir" ] || return 0
  soong_machine_stop "$name"
  if mountpoint -q "$dir/root"; then
    umount "$dir/root" 2>/dev/null || umount -l "$dir/root"
  fi
  rm -rf --one-file-system "$dir"
  # What nspawn cannot remove itself where /run is not a tmpfs (empty dirs).
  rm -rf --one-file-system "/run/systemd/nspawn/propagate/$(_soong_nspawn_name "$name")"
}

# The EXIT trap: every machine of this process, then the run directory.
# Set SOONG_TEST_KEEP=1 to keep them for a post-mortem (paths are logged).
soong_cleanup() {
  local status=$? name
  if [ "${SOONG_TEST_KEEP:-0}" = 1 ]; then
    soong_log "SOONG_TEST_KEEP=1: leaving machines in $_SOONG_RUN_DIR"
    for name in "${_SOONG_MACHINES[@]}"; do soong_machine_stop "$name"; done
    return "$status"
  fi
  for name in "${_SOONG_MACHINES[@]}"; do soong_machine_destroy "$name" || true; done
  [ -z "$_SOONG_RUN_DIR" ] || rm -rf --one-file-system "$_SOONG_RUN_DIR"
  return "$status"
}

# soong_http_serve DIR -> prints "PID PORT": a static HTTP server on
# 127.0.0.1 (reachable from the machines, which share the host's network
# namespace) serving DIR. Stopped by soong_http_stop PID or the caller.
soong_http_serve() {
  local dir=$1 log port pid
  log=$(mktemp)
  python3 -u -m http.server --bind 127.0.0.1 --directory "$dir" 0 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do
    port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  rm -f "$log"
  [ -n "$port" ] || soong_die "the HTTP server did not start"
  printf '%s %s\n' "$pid" "$port"
}

# A free TCP port on 127.0.0.1 (racy by nature; good enough for tests).
soong_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# soong_daemon_binary -> the path of a built soong-daemon: $SOONG_DAEMON_BIN,
# else target/debug/soong-daemon, built (or found up to date) by cargo.
soong_daemon_binary() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [ -n "${SOONG_DAEMON_BIN:-}" ]; then
    [ -x "$SOONG_DAEMON_BIN" ] || soong_die "SOONG_DAEMON_BIN=$SOONG_DAEMON_BIN is not executable"
    printf '%s\n' "$SOONG_DAEMON_BIN"
    return
  fi
  # A no-op when it is up to date; never a stale binary.
  soong_log "cargo build -p soong-daemon"
  (cd "$repo" && cargo build --locked -q -p soong-daemon) >&2 ||
    soong_die "cargo build -p soong-daemon failed"
  printf '%s\n' "$repo/target/debug/soong-daemon"
}

# soong_daemon_config LISTEN_PORT ACTIVITY_PORT [API_URL] -> a daemon config
# for tests: credentials from the unit's LoadCredential=, launched now,
# policy far enough away that nothing terminates during a test, and a Lambda
# API URL that refuses connections unless one is given (a lambda-sim, say).
soong_daemon_config() {
  local listen=$1 activity=$2 api=${3:-http://127.0.0.1:9/}
  cat <<YAML
listen: 127.0.0.1:$listen
token_file: /run/credentials/soong-daemon.service/token
lambda:
  api_url: $api
  api_key_file: /run/credentials/soong-daemon.service/lambda-api-key
instance:
  id: soong-test-instance
  name: soong-test
  launched_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)
policy:
  idle_timeout: 30m
  lease: 4h
  max_lease: 8h
  hard_timeout: 8h
activity:
  ports: [$activity]
  terminals: true
  sample_interval: 1s
state_dir: /var/lib/soong-daemon
YAML
}

# soong_install_daemon NAME CONFIG_FILE TOKEN: puts the daemon into a machine
# (booted or not) as every provisioner does: binary in /usr/local/bin, the
# unit from systemd/render.sh, /etc/soong/daemon.yaml, and the credentials
# (0600 root) in /etc/soong/credentials. Does not start it.
soong_install_daemon() {
  local name=$1 config=$2 token=$3 root repo
  root=$(soong_machine_root "$name")
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  install -D -m0755 "$(soong_daemon_binary)" "$root/usr/local/bin/soong-daemon"
  "$repo/systemd/render.sh" >"$root/etc/systemd/system/soong-daemon.service"
  install -D -m0644 "$config" "$root/etc/soong/daemon.yaml"
  install -d -m0700 "$root/etc/soong/credentials"
  (
    umask 077
    printf '%s' "$token" >"$root/etc/soong/credentials/token"
    printf '%s' "soong-test-lambda-key" >"$root/etc/soong/credentials/lambda-api-key"
    : >"$root/etc/soong/credentials/worker-token"
  )
}
