#!/usr/bin/env bash
# soong-daemon under a real systemd and journald (a booted Debian container),
# against a lambda-sim on the host's loopback: the shipped unit reaches
# active through Type=notify; its lines are in the journal with the SOONG_*
# fields; a hung enforcement loop (the debug build's stall hook: the process
# lives and serves HTTP, only the loop stops) and a frozen process (SIGSTOP)
# each make systemd's watchdog restart it with the lease deadline unchanged;
# and the lease running out inside the container terminates the instance in
# the simulator. See tests/system/README.md for the harness.
#
#   sudo tests/system/daemon.sh      (after tests/system/run-all.sh installed the host packages)
#
# Needs a debug build of soong-daemon (the stall hook exists only there):
# soong_daemon_binary builds one, or set SOONG_DAEMON_BIN to one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/system/lib.sh
source "$here/lib.sh"


work=$(mktemp -d)
sim_pid=""
cleanup() {
  [ -z "$sim_pid" ] || kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
  soong_cleanup
}
trap cleanup EXIT

# --- lambda-sim on the host's loopback, with one active instance ----------
sim_bin=${LAMBDA_SIM_BIN:-}
if [ -z "$sim_bin" ]; then
  (cd "$repo" && cargo build --locked -q -p lambda-sim) >&2
  sim_bin="${CARGO_TARGET_DIR:-$repo/target}/debug/lambda-sim"
fi
# The key soong_install_daemon writes as the instance's credential.
printf 'api_keys: [soong-test-lambda-key]\n' >"$work/scenario.yaml"
"$sim_bin" --listen 127.0.0.1:0 --scenario "$work/scenario.yaml" --no-rate-limit \
  >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$work/sim.out" && break; sleep 0.1; done
sim_url=$(sed -n 's/^listening on //p' "$work/sim.out")
[ -n "$sim_url" ] || { cat "$work/sim.err" >&2; soong_die "lambda-sim did not start"; }
instance_id=$(curl -fsS -X POST -H 'content-type: application/json' \
  -d '{"name":"soong-test","tags":[{"key":"soong:managed","value":"true"}]}' \
  "$sim_url/sim/instances" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
[ -n "$instance_id" ] || soong_die "cannot create an instance in lambda-sim"
instance_status() {
  curl -fsS -u soong-test-lambda-key: "$sim_url/api/v1/instances/$instance_id" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["status"])'
}

# --- the daemon in a booted container -------------------------------------
soong_image_ensure
soong_machine_create daemon
listen=$(soong_free_port)
activity=$(soong_free_port)
token="daemon-test-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# A lease that runs out during the test (after the watchdog checks), nothing
# else that could fire first.
lease_seconds=${SOONG_TEST_LEASE_SECONDS:-240}
soong_daemon_config "$listen" "$activity" "$sim_url/api/v1" |
  sed -e "s/^  id: .*/  id: $instance_id/" -e "s/^  lease: .*/  lease: ${lease_seconds}s/" >"$work/daemon.yaml"
soong_install_daemon daemon "$work/daemon.yaml" "$token"
# The test hook, in a drop-in (the shipped unit stays as it is): while this
# file exists the enforcement loop stalls. /run is readable under the unit's
# ProtectSystem=strict; /tmp would be the unit's private one.
root=$(soong_machine_root daemon)
mkdir -p "$root/etc/systemd/system/soong-daemon.service.d"
printf '[Service]\nEnvironment=SOONG_TEST_STALL_LOOP_FILE=/run/soong-test-stall\n' \
  >"$root/etc/systemd/system/soong-daemon.service.d/test-hook.conf"
(umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth")
soong_machine_boot daemon

status_field() { # status_field KEY -> value from GET /status (token from a file, never argv)
  curl -fsS --max-time 5 -H @"$work/auth" "http://127.0.0.1:$listen/status" |
    python3 -c "import json, sys; v = json.load(sys.stdin).get('$1'); print('' if v is None else v)"
}
main_pid() { soong_machine_exec daemon systemctl show -P MainPID soong-daemon.service || echo 0; }
journal_json() { soong_machine_journal daemon -u soong-daemon.service -o json; }
# journal_has FIELD=VALUE... [MESSAGE-SUBSTRING]: an entry with all of them.
journal_has() {
  journal_json | python3 -c '
import json, sys
want = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
text = [a for a in sys.argv[1:] if "=" not in a]
for line in sys.stdin:
    entry = json.loads(line)
    if all(entry.get(k) == v for k, v in want.items()) and all(t in str(entry.get("MESSAGE", "")) for t in text):
        sys.exit(0)
sys.exit(1)' "$@"
}
# wait_restart OLD_PID SECONDS: a new MainPID, active again.
wait_restart() {
  local old=$1 seconds=$2 pid
  for _ in $(seq $((seconds * 2))); do
    pid=$(main_pid)
    if [ "$pid" != 0 ] && [ "$pid" != "$old" ] &&
      [ "$(soong_machine_exec daemon systemctl is-active soong-daemon.service || true)" = active ]; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# --- Type=notify: start returns once READY=1 arrived ----------------------
start_rc=0
soong_machine_exec daemon systemctl start soong-daemon.service || start_rc=$?
state=$(soong_machine_exec daemon systemctl is-active soong-daemon.service || true)
if [ "$start_rc" = 0 ] && [ "$state" = active ]; then
  ok "the unit reaches active through Type=notify (systemctl start returned after READY=1)"
else
  not_ok "the unit reaches active through Type=notify: exit $start_rc, $state"
  soong_machine_exec daemon systemctl status --no-pager soong-daemon.service || true
  soong_machine_journal daemon -u soong-daemon.service -n 30 || true
fi
check "systemd shows the daemon's STATUS= line" \
  soong_machine_wait daemon 10 sh -c 'systemctl show -P StatusText soong-daemon.service | grep -q "^idle .*, lease .* left, shutdown .* (lease)$"'

# --- journald: the lines, with structured fields --------------------------
shutdown_at=$(status_field shutdown_at || true)
check "the start-up line is in the journal with SOONG_INSTANCE_ID, SOONG_REASON and SOONG_SHUTDOWN_AT" \
  journal_has "SOONG_INSTANCE_ID=$instance_id" SOONG_REASON=lease_expired "SOONG_SHUTDOWN_AT=$shutdown_at" "guarding instance"
check "journal entries come through the native protocol (SYSLOG_IDENTIFIER=soong-daemon, _TRANSPORT=journal)" \
  journal_has SYSLOG_IDENTIFIER=soong-daemon _TRANSPORT=journal
curl -fsS --max-time 5 -H @"$work/auth" -H 'content-type: application/json' -d '{"hours": 0.01}' \
  "http://127.0.0.1:$listen/extend" >/dev/null || true
check "an extension is logged with SOONG_REASON and SOONG_SHUTDOWN_AT" \
  journal_has SOONG_REASON=lease_expired "SOONG_SHUTDOWN_AT=$(status_field shutdown_at || true)" "lease extended by 36s"

# --- a hung enforcement loop: the watchdog restarts the daemon ------------
lease=$(status_field lease_deadline || true)
pid=$(main_pid)
soong_machine_exec daemon touch /run/soong-test-stall
# WatchdogSec=30s: the pings stop with the loop, although the process still
# answers HTTP; systemd kills it (SIGABRT) and Restart=always starts it again.
sleep 3
check "while the loop is stalled the API still answers (only the loop hangs)" \
  test "$(curl -fsS --max-time 5 "http://127.0.0.1:$listen/health" || true)" = '{"status":"ok"}'
# Remove the stall file as soon as the restart happened, so the new process runs.
restarted=no
for _ in $(seq 120); do
  new_pid=$(main_pid)
  if [ "$new_pid" != 0 ] && [ "$new_pid" != "$pid" ]; then
    soong_machine_exec daemon rm -f /run/soong-test-stall
    restarted=yes
    break
  fi
  sleep 0.5
done
soong_machine_exec daemon rm -f /run/soong-test-stall
check "a stalled enforcement loop gets the daemon restarted by the watchdog (pid $pid -> ${new_pid:-none})" \
  test "$restarted" = yes
watchdog_logged() { soong_machine_journal daemon -u soong-daemon.service -o cat | grep -q 'Watchdog timeout'; }
check "systemd logged a watchdog timeout for the unit" watchdog_logged
check "it is active again after the watchdog restart" wait_restart "$pid" 30
check "after the watchdog restart the lease deadline is unchanged ($lease)" \
  test -n "$lease" -a "$(status_field lease_deadline || true)" = "$lease"

# --- a frozen process (SIGSTOP): the same --------------------------------
pid=$(main_pid)
soong_machine_exec daemon kill -STOP "$pid"
check "a frozen daemon (SIGSTOP) is restarted by the watchdog (pid $pid)" wait_restart "$pid" 60
check "after that restart the lease deadline is still $lease" \
  test -n "$lease" -a "$(status_field lease_deadline || true)" = "$lease"

# --- the lease runs out: the instance is terminated in the simulator -------
deadline_epoch=$(date -d "$lease" +%s)
wait_for=$((deadline_epoch - $(date +%s) + 30))
((wait_for > 0)) || wait_for=30
echo "# waiting up to ${wait_for}s for the lease ($lease) to run out"
terminated=no
for _ in $(seq $((wait_for * 2))); do
  case "$(instance_status 2>/dev/null || true)" in
    terminating | terminated) terminated=yes; break ;;
  esac
  sleep 0.5
done
check "at the lease's end the daemon terminated instance $instance_id in lambda-sim" test "$terminated" = yes
if [ "$terminated" = yes ]; then
  late=$(($(date +%s) - deadline_epoch))
  check "within a few seconds of the deadline (${late}s after it)" test "$late" -le 10
fi
check "the termination is in the journal with SOONG_REASON=lease_expired and SOONG_INSTANCE_ID" \
  journal_has SOONG_REASON=lease_expired "SOONG_INSTANCE_ID=$instance_id" "terminating instance"
confirmed_logged() {
  local _
  for _ in $(seq 40); do
    journal_has "SOONG_INSTANCE_ID=$instance_id" "confirmed the termination" && return 0
    sleep 0.5
  done
  return 1
}
check "Lambda's confirmation is in the journal too" confirmed_logged

# --- secrets stay out of the journal --------------------------------------
if soong_machine_journal daemon -o cat | grep -qF -e "$token" -e soong-test-lambda-key; then
  not_ok "neither the token nor the API key appears in the journal"
else
  ok "neither the token nor the API key appears in the journal"
fi

echo "daemon: $passed passed, $failed failed"
[ "$failed" = 0 ]
