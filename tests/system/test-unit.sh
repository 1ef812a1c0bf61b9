#!/usr/bin/env bash
# The shipped unit (systemd/soong-daemon.service.in) in a booted Debian
# container: `systemd-analyze verify` says nothing, the exposure score is the
# one docs/reference/systemd.md records, and under all its hardening the
# daemon starts through Type=notify, runs as its own unprivileged user, reads
# its credentials, keeps its state, is restarted when killed, and still sees
# terminal and TCP activity.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/system/lib.sh
source "$here/lib.sh"


# The renderer refuses paths systemd or sed would read specially.
if "$repo/systemd/render.sh" --bindir 'relative/bin' >/dev/null 2>&1; then
  not_ok "render.sh refuses a relative --bindir"
else
  ok "render.sh refuses a relative --bindir"
fi
rendered=$("$repo/systemd/render.sh" --bindir /opt/x/bin --credentials-dir /srv/creds)
check "render.sh fills in every placeholder" test "$(grep -c '@[a-z_]*@' <<<"$rendered")" = 0
check "render.sh puts --bindir into ExecStart" grep -qx 'ExecStart=/opt/x/bin/soong-daemon --config /etc/soong/daemon.yaml' <<<"$rendered"
check "render.sh puts --credentials-dir into LoadCredential" grep -qx 'LoadCredential=token:/srv/creds/token' <<<"$rendered"

soong_image_ensure
soong_machine_create unit
work=$(mktemp -d)
trap 'rm -rf "$work"; soong_cleanup' EXIT
listen=$(soong_free_port)
activity=$(soong_free_port)
token="unit-test-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
soong_daemon_config "$listen" "$activity" >"$work/daemon.yaml"
soong_install_daemon unit "$work/daemon.yaml" "$token"
(umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth")
soong_machine_boot unit

status_field() { # status_field KEY -> value from GET /status (token from a file, never argv)
  curl -fsS --max-time 5 -H @"$work/auth" "http://127.0.0.1:$listen/status" |
    python3 -c "import json, sys; v = json.load(sys.stdin).get('$1'); print('' if v is None else v)"
}

# --- systemd-analyze verify: no output at all, exit 0 ---------------------
verify_out=$(soong_machine_exec unit systemd-analyze verify /etc/systemd/system/soong-daemon.service 2>&1) && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" = 0 ] && [ -z "$verify_out" ]; then
  ok "systemd-analyze verify is clean"
else
  not_ok "systemd-analyze verify is clean (exit $verify_rc):"
  printf '  %s\n' "$verify_out"
fi

# --- systemd-analyze security: the score the docs record ------------------
security=$(soong_machine_exec unit systemd-analyze security --no-pager soong-daemon.service 2>&1 || true)
score=$(sed -n 's/.*Overall exposure level for soong-daemon.service: \([0-9.]*\).*/\1/p' <<<"$security")
systemd_version=$(soong_machine_exec unit systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p')
echo "# systemd-analyze security (systemd $systemd_version): exposure $score"
check "the exposure score ($score) is at most 1.5" python3 -c "import sys; sys.exit(0 if 0 <= float('${score:-99}') <= 1.5 else 1)"
check "docs/reference/systemd.md records exposure $score (systemd $systemd_version)" \
  grep -q "exposure level \*\*$score\*\* (systemd $systemd_version" "$repo/docs/reference/systemd.md"

# --- it starts through Type=notify ---------------------------------------
start_rc=0
soong_machine_exec unit systemctl start soong-daemon.service || start_rc=$?
state=$(soong_machine_exec unit systemctl is-active soong-daemon.service || true)
if [ "$start_rc" = 0 ] && [ "$state" = active ]; then
  ok "systemctl start returns once the daemon sent READY=1 (Type=notify): active"
else
  not_ok "systemctl start returns once the daemon sent READY=1 (Type=notify): exit $start_rc, $state"
  soong_machine_exec unit systemctl status --no-pager soong-daemon.service || true
  soong_machine_journal unit -u soong-daemon.service -n 30 || true
fi
check "GET /health answers on the configured port" curl -fsS -o /dev/null "http://127.0.0.1:$listen/health"

pid=$(soong_machine_exec unit systemctl show -P MainPID soong-daemon.service || echo 0)
uid=$(soong_machine_exec unit ps -o uid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
# DynamicUser= allocates from 61184-65519 (the name resolves through nss-systemd).
check "the daemon runs as a dynamic user, not root (uid ${uid:-none})" test "${uid:-0}" -ge 61184 -a "${uid:-0}" -le 65519
capeff=$(soong_machine_exec unit awk '/^CapEff/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
check "the daemon holds no capabilities (CapEff $capeff)" test "$capeff" = 0000000000000000
creds=$(soong_machine_exec unit stat -c '%a %u' /run/credentials/soong-daemon.service/token 2>&1 || true)
check "the token is a 0400 credential of the service's user only ($creds)" test "$creds" = "400 ${uid:-none}"
src=$(stat -c '%a %U' "$(soong_machine_root unit)/etc/soong/credentials/token")
check "the token's source file is 0600 root ($src)" test "$src" = "600 root"
check "the state file lives in the StateDirectory" soong_machine_exec unit test -s /var/lib/soong-daemon/state.json

# --- hardening leaves activity detection working --------------------------
before=$(status_field last_activity || true)
soong_machine_run unit -- script -qc 'for i in 1 2 3; do echo typing; sleep 1; done' /dev/null >/dev/null ||
  not_ok "a pty session runs in the container"
sleep 2
source_=$(status_field last_activity_source || true)
check "a terminal (pty) in use is activity under the hardening ($source_)" grep -qx 'terminal:pts/[0-9]*' <<<"$source_"
if python3 - "$activity" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
server = socket.socket()
server.bind(("127.0.0.1", port))
server.listen(1)
client = socket.create_connection(("127.0.0.1", port))
peer, _ = server.accept()
for _ in range(3):
    client.send(b"x")
    peer.recv(1)
    time.sleep(1)
PY
then :; else not_ok "a TCP connection on 127.0.0.1:$activity"; fi
sleep 2
source_=$(status_field last_activity_source || true)
check "a TCP connection on an activity port is activity (netlink sock_diag) ($source_)" test "$source_" = "connection:$activity"
after=$(status_field last_activity || true)
check "last_activity moved ($before -> $after)" test "$before" != "$after"

# --- restarts: killed, it comes back with the same deadlines --------------
lease=$(status_field lease_deadline || true)
soong_machine_exec unit kill -KILL "$pid" || true
restarted=no
for _ in $(seq 1 40); do
  new_pid=$(soong_machine_exec unit systemctl show -P MainPID soong-daemon.service || echo 0)
  if [ "$new_pid" != 0 ] && [ "$new_pid" != "$pid" ] &&
    [ "$(soong_machine_exec unit systemctl is-active soong-daemon.service || true)" = active ]; then
    restarted=yes
    break
  fi
  sleep 0.5
done
check "Restart=always brings a killed daemon back (pid $pid -> ${new_pid:-none})" test "$restarted" = yes
check "after the restart the lease deadline is unchanged ($lease)" test -n "$lease" -a "$(status_field lease_deadline || true)" = "$lease"

# --- secrets stay out of the journal --------------------------------------
if soong_machine_journal unit -o cat | grep -qF "$token"; then
  not_ok "the token appears nowhere in the journal"
else
  ok "the token appears nowhere in the journal"
fi

echo "unit: $passed passed, $failed failed"
[ "$failed" = 0 ]
