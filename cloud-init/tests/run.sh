#!/usr/bin/env bash
# Tests of cloud-init/user-data.yaml.tmpl (as root; tests/system/run-all.sh
# installs the host packages):
#   1. static: placeholders = variables.json = README; the embedded unit is
#      systemd/render.sh's output; samples render, stay under 1 MB and pass
#      `cloud-init schema` (Debian's cloud-init, inside the test tree);
#   2. a real cloud-init run in a booted Debian container with a NoCloud
#      seed, the daemon binary served from the host's loopback with the right
#      sha256: config, credentials, host key, unit active, SGLang and n8n
#      units written with the model's flags;
#   3. the same with a wrong sha256: nothing installed, the error logged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ci=$(cd "$here/.." && pwd)
repo=$(cd "$ci/.." && pwd)
# shellcheck source=tests/system/lib.sh
source "$repo/tests/system/lib.sh"


work=$(mktemp -d)
http_pid=""
cleanup_work() {
  [ -z "$http_pid" ] || kill "$http_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap 'cleanup_work; soong_cleanup' EXIT

# ---------------------------------------------------------------------------
# 1. static checks
# ---------------------------------------------------------------------------
check "the template's placeholders are exactly variables.json's, each in README.md" python3 - "$ci" <<'PY'
import json, pathlib, re, sys
ci = pathlib.Path(sys.argv[1])
used = set(re.findall(r"\{\{([a-z0-9_]+)\}\}", (ci / "user-data.yaml.tmpl").read_text()))
names = {v["name"] for v in json.loads((ci / "variables.json").read_text())["variables"]}
readme = (ci / "README.md").read_text()
missing_in_readme = sorted(n for n in names if f"`{n}`" not in readme)
ok = used == names and not missing_in_readme
if not ok:
    print("  only in the template:", sorted(used - names), "only in variables.json:", sorted(names - used),
          "not in README.md:", missing_in_readme)
sys.exit(0 if ok else 1)
PY
check "the template carries systemd/render.sh's unit (cloud-init/update-unit.sh --check)" "$ci/update-unit.sh" --check
# Debian's python3 (run-all.sh installs python3-yaml for it), not whatever python3 is first on PATH.
check "the embedded unit, parsed as YAML, is byte for byte the rendered unit" /usr/bin/python3 - "$ci" "$repo" <<'PY'
import pathlib, subprocess, sys, yaml
ci, repo = map(pathlib.Path, sys.argv[1:3])
data = yaml.safe_load((ci / "user-data.yaml.tmpl").read_text())
unit = [f for f in data["write_files"] if f["path"] == "/etc/systemd/system/soong-daemon.service"][0]["content"]
sys.exit(0 if unit == subprocess.run([repo / "systemd" / "render.sh"], capture_output=True, text=True, check=True).stdout else 1)
PY

b64() { printf '%s' "$1" | base64 -w0; }
b64file() { base64 -w0 <"$1"; }

# The values of one rendering. $1: sample name; the daemon config, keys and
# URL come from files and variables set below.
write_values() { # write_values OUT SHA256 QUANTIZATION HF_TOKEN WORKER_TOKEN TP
  python3 - "$@" <<PY
import json, sys
out, sha, quant, hf, worker, tp = sys.argv[1:7]
values = {
  "daemon_config_b64": "$(b64file "$work/daemon.yaml")",
  "daemon_token_b64": "$(b64 "$token")",
  "lambda_api_key_b64": "$(b64 "$api_key")",
  "worker_token_b64": worker,
  "daemon_binary_url": "$binary_url",
  "daemon_binary_sha256": sha,
  "ssh_host_ed25519_private_b64": "$(b64file "$work/hostkey")",
  "ssh_host_ed25519_public": "$(cat "$work/hostkey.pub")",
  "service_user": "ubuntu",
  "model_id": "qwen2.5-coder-32b",
  "model_hf_path": "Qwen/Qwen2.5-Coder-32B-Instruct",
  "model_quantization": quant,
  "model_tensor_parallel_size": tp,
  "model_context_length": "32768",
  "model_served_name": "qwen2.5-coder-32b",
  "hf_token_b64": hf,
  "sglang_version": "0.4.6.post5",
  "n8n_version": "1.94.1",
  "filesystem_mount_path": "/lambda/nfs/soong-test",
}
json.dump(values, open(out, "w"))
PY
}

# Secrets of this run (random, so a leak is unambiguous).
rand() { head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_'; }
token="tok-$(rand)"
api_key="secret_lambda-$(rand)"
worker_token="$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
hf_token="hf_$(rand)"
ssh-keygen -q -t ed25519 -N '' -C soong-test-host -f "$work/hostkey"
listen=$(soong_free_port)
{
  soong_daemon_config "$listen" 8000
  printf 'worker:\n  url: http://127.0.0.1:9/\n  token_file: /run/credentials/soong-daemon.service/worker-token\n'
} >"$work/daemon.yaml"

# The daemon binary, served from the host's loopback (the machines share
# its network namespace).
mkdir -p "$work/www"
cp "$(soong_daemon_binary)" "$work/www/soong-daemon"
sha256=$(sha256sum "$work/www/soong-daemon" | cut -d' ' -f1)
# The server answers the first two GETs with 503, so the instance's
# download has to retry (and logs each request to requests.log).
python3 -u - "$work/www" "$work/requests.log" >"$work/http.port" 2>/dev/null <<'PY' &
import functools, http.server, sys
root, log = sys.argv[1], sys.argv[2]
failures = [2]
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        if failures[0] > 0:
            failures[0] -= 1
            self.send_error(503, "try again")
            return
        super().do_GET()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
print(server.server_address[1], flush=True)
server.serve_forever()
PY
http_pid=$!
for _ in $(seq 1 50); do [ -s "$work/http.port" ] && break; sleep 0.1; done
http_port=$(cat "$work/http.port")
[ -n "$http_port" ] || soong_die "the HTTP server did not start"
binary_url="http://127.0.0.1:$http_port/soong-daemon"

write_values "$work/ok.json" "$sha256" fp8 "$(b64 "$hf_token")" "$(b64 "$worker_token")" 2
write_values "$work/plain.json" "$sha256" "" "" "" 1
write_values "$work/bad.json" "$(printf 'not the binary' | sha256sum | cut -d' ' -f1)" "" "" "" 1
for sample in ok plain bad; do
  "$here/render.py" "$work/$sample.json" >"$work/$sample.yaml"
done
sed 's/"model_tensor_parallel_size": "1"/"model_tensor_parallel_size": "1; rm -rf \/"/' "$work/plain.json" >"$work/evil.json"
if "$here/render.py" "$work/evil.json" >/dev/null 2>"$work/evil.err"; then
  not_ok "the renderer refuses a value that does not match its pattern"
else
  ok "the renderer refuses a value that does not match its pattern ($(cut -c1-80 "$work/evil.err"))"
fi
for sample in ok plain; do
  size=$(stat -c %s "$work/$sample.yaml")
  check "$sample: the rendered user-data ($size bytes) is under Lambda's 1 MB limit" test "$size" -lt 1000000
  check "$sample: starts with #cloud-config" test "$(head -n1 "$work/$sample.yaml")" = "#cloud-config"
done

soong_image_ensure
# `cloud-init schema` from Debian's cloud-init, in the test tree.
soong_machine_create ci-ok
root=$(soong_machine_root ci-ok)
for sample in ok plain; do
  cp "$work/$sample.yaml" "$root/root/$sample.yaml"
  if out=$(soong_machine_chroot ci-ok cloud-init schema --config-file "/root/$sample.yaml" 2>&1); then
    ok "$sample: cloud-init schema --config-file: $(tail -n1 <<<"$out")"
  else
    not_ok "$sample: cloud-init schema --config-file"
    printf '  %s\n' "$out"
  fi
  rm -f "$root/root/$sample.yaml"
done

# ---------------------------------------------------------------------------
# 2. and 3. real cloud-init runs
# ---------------------------------------------------------------------------
# seed MACHINE SAMPLE: NoCloud seed, cloud-init switched on, and the one stub:
# SGLang's install (GBs of wheels) and the SGLang and n8n servers (no GPU,
# no Docker here) are skipped by a condition that never holds, so cloud-init
# starts them for real and systemd records the skip.
seed() {
  local root
  root=$(soong_machine_root "$1")
  install -d "$root/var/lib/cloud/seed/nocloud"
  install -m0600 "$work/$2.yaml" "$root/var/lib/cloud/seed/nocloud/user-data"
  printf 'instance-id: iid-soong-%s\nlocal-hostname: %s\n' "$2" "$1" >"$root/var/lib/cloud/seed/nocloud/meta-data"
  rm -f "$root/etc/cloud/cloud-init.disabled"
  local unit
  for unit in soong-sglang-install.service sglang.service n8n.service; do
    install -d "$root/etc/systemd/system/$unit.d"
    printf '[Unit]\n# soong tests: no GPU, no Docker, no multi-GB downloads here.\nConditionPathExists=/soong-test/never\n' \
      >"$root/etc/systemd/system/$unit.d/soong-test-stub.conf"
  done
}

# wait_cloud_init MACHINE -> prints cloud-init's final status line
wait_cloud_init() {
  soong_machine_exec "$1" timeout 300 cloud-init status --wait >/dev/null 2>&1 || true
  { soong_machine_exec "$1" cloud-init status 2>/dev/null || true; } | sed -n 's/^status: //p'
}

file_mode() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
same_content() { # same_content FILE STRING
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

seed ci-ok ok
start=$SECONDS
soong_machine_boot ci-ok
status=$(wait_cloud_init ci-ok)
echo "# cloud-init finished in $((SECONDS - start))s: $status"
if [ "$status" = "done" ]; then
  ok "ok: cloud-init finished without errors"
else
  not_ok "ok: cloud-init finished without errors (status: $status)"
  soong_machine_exec ci-ok cloud-init status --long || true
  soong_machine_exec ci-ok tail -n 40 /var/log/cloud-init-output.log || true
fi
errors=$(soong_machine_exec ci-ok python3 -c 'import json; r = json.load(open("/run/cloud-init/result.json"))["v1"]; print(len(r["errors"]))' 2>/dev/null || echo unreadable)
check "ok: /run/cloud-init/result.json lists no errors ($errors)" test "$errors" = 0

check "ok: /etc/soong/daemon.yaml is the config, 0644 root" \
  test "$(file_mode "$root/etc/soong/daemon.yaml")" = "644 root:root" -a -z "$(diff "$root/etc/soong/daemon.yaml" "$work/daemon.yaml")"
check "ok: /etc/soong/credentials is 0700 root" test "$(file_mode "$root/etc/soong/credentials")" = "700 root:root"
for pair in "token:$token" "lambda-api-key:$api_key" "worker-token:$worker_token" "hf-token:$hf_token"; do
  name=${pair%%:*}
  value=${pair#*:}
  check "ok: credential $name is 0600 root and holds the value" \
    test "$(file_mode "$root/etc/soong/credentials/$name")" = "600 root:root"
  same_content "$root/etc/soong/credentials/$name" "$value" || not_ok "ok: credential $name holds the value"
done
check "ok: the host's private key is the pinned one, 0600 root" \
  test "$(file_mode "$root/etc/ssh/ssh_host_ed25519_key")" = "600 root:root" -a -z "$(diff "$root/etc/ssh/ssh_host_ed25519_key" "$work/hostkey")"
check "ok: the public key is the pinned one" test "$(cat "$root/etc/ssh/ssh_host_ed25519_key.pub")" = "$(cat "$work/hostkey.pub")"
others=$(find "$root/etc/ssh" -name 'ssh_host_*_key' ! -name 'ssh_host_ed25519_key' | wc -l)
check "ok: the image's other host keys are gone ($others left)" test "$others" = 0
# sshd serves exactly that key (ssh.service is masked in the test tree, so
# start one on a free loopback port).
ssh_port=$(soong_free_port)
soong_machine_exec ci-ok systemd-run --quiet --unit=soong-test-sshd -p RuntimeDirectory=sshd \
  /usr/sbin/sshd -D -p "$ssh_port" -o ListenAddress=127.0.0.1 || true
scanned=""
for _ in $(seq 1 20); do
  scanned=$(ssh-keyscan -t ed25519 -p "$ssh_port" 127.0.0.1 2>/dev/null | awk '{print $2, $3}') && [ -n "$scanned" ] && break
  sleep 0.5
done
check "ok: sshd in the instance presents the pinned host key" test "$scanned" = "$(cut -d' ' -f1,2 "$work/hostkey.pub")"

requests=$(grep -c '^/soong-daemon$' "$work/requests.log" 2>/dev/null || echo 0)
check "ok: the download was retried past two 503s ($requests requests)" test "$requests" -ge 3
check "ok: the daemon binary is the served one (sha256 $sha256)" test "$(sha256sum "$root/usr/local/bin/soong-daemon" 2>/dev/null | cut -d' ' -f1)" = "$sha256"
check "ok: the unit installed is systemd/render.sh's" test -z "$(diff "$root/etc/systemd/system/soong-daemon.service" <("$repo/systemd/render.sh"))"
check "ok: soong-daemon.service is enabled" test "$(soong_machine_exec ci-ok systemctl is-enabled soong-daemon.service || true)" = enabled
state=$(soong_machine_exec ci-ok systemctl is-active soong-daemon.service || true)
check "ok: soong-daemon.service is active" test "$state" = active
[ "$state" = active ] || soong_machine_journal ci-ok -u soong-daemon.service -n 20 || true
check "ok: the daemon answers /health on its configured port" curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$listen/health"
(umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth")
check "ok: the daemon accepts the delivered token (GET /status)" curl -fsS --max-time 5 -o /dev/null -H @"$work/auth" "http://127.0.0.1:$listen/status"
installed=$(soong_machine_journal ci-ok -t soong-provision -o cat 2>/dev/null || true)
check "ok: the journal says what was installed, from where, with which sha256" \
  grep -qF "installed /usr/local/bin/soong-daemon from $binary_url (sha256 $sha256)" <<<"$installed"

# SGLang and n8n: units written with the model's flags, enabled, started by
# cloud-init (and skipped by the test's stub condition).
# EnvironmentFile= overrides Environment=, so swap the interpreter with env(1).
argv=$(soong_machine_exec ci-ok systemd-run --quiet --wait --pipe -p EnvironmentFile=/etc/soong/sglang.env \
  /usr/bin/env SOONG_SGLANG_PYTHON=/bin/echo /usr/local/lib/soong/sglang-launch 2>&1 || true)
expected="-m sglang.launch_server --model-path Qwen/Qwen2.5-Coder-32B-Instruct --served-model-name qwen2.5-coder-32b --tp-size 2 --context-length 32768 --host 127.0.0.1 --port 8000 --quantization fp8"
check "ok: SGLang is launched with the model's flags ($argv)" test "$argv" = "$expected"
check "ok: SGLang's model cache is on the persistent filesystem" grep -qx 'HF_HOME=/lambda/nfs/soong-test/soong/huggingface' "$root/etc/soong/sglang.env"
check "ok: SGLang's install pins the version" grep -q 'ConditionPathExists=!/opt/soong/sglang-0.4.6.post5/.soong-installed' "$root/etc/systemd/system/soong-sglang-install.service"
check "ok: SGLang gets the HF token as a credential file, not in its environment" \
  sh -c "grep -qx 'LoadCredential=hf-token:/etc/soong/credentials/hf-token' '$root/etc/systemd/system/sglang.service' && ! grep -rqF '$hf_token' '$root/etc/soong/sglang.env' '$root/etc/systemd/system/'"
n8n_exec=$(soong_machine_exec ci-ok systemctl show -P ExecStart n8n.service || true)
check "ok: n8n runs the pinned image" grep -qF 'docker.n8n.io/n8nio/n8n:1.94.1' "$root/etc/systemd/system/n8n.service"
check "ok: n8n's data is on the persistent filesystem" grep -qF -- '--volume /lambda/nfs/soong-test/soong/n8n:/home/node/.n8n' <<<"$n8n_exec"
for unit in soong-sglang-install sglang n8n; do
  [ "$unit" = soong-sglang-install ] ||
    check "ok: $unit.service is enabled" test "$(soong_machine_exec ci-ok systemctl is-enabled "$unit.service" || true)" = enabled
  cond=$(soong_machine_exec ci-ok systemctl show -P ConditionTimestampMonotonic "$unit.service" || echo 0)
  check "ok: cloud-init started $unit.service (skipped by the test's stub)" test "${cond:-0}" != 0
done

# Secrets: nowhere but their files (and cloud-init's own 0600 copy of the user-data).
leaks=""
for secret in "$token" "$api_key" "$worker_token" "$hf_token"; do
  if soong_machine_journal ci-ok -o cat 2>/dev/null | grep -qF "$secret"; then leaks="$leaks journal"; fi
  for log in var/log/cloud-init.log var/log/cloud-init-output.log; do
    if grep -qF "$secret" "$root/$log" 2>/dev/null; then leaks="$leaks $log"; fi
  done
done
check "ok: no secret in the journal or cloud-init's logs${leaks:+ (found in$leaks)}" test -z "$leaks"
userdata_mode=$(soong_machine_exec ci-ok stat -L -c '%a %U:%G' /var/lib/cloud/instance/user-data.txt 2>/dev/null || echo missing)
check "ok: cloud-init's copy of the user-data is 0600 root ($userdata_mode)" test "$userdata_mode" = "600 root:root"
verify_out=$(soong_machine_exec ci-ok systemd-analyze verify /etc/systemd/system/sglang.service \
  /etc/systemd/system/soong-sglang-install.service 2>&1) && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" = 0 ] && [ -z "$verify_out" ]; then
  ok "ok: systemd-analyze verify is clean for SGLang's units"
else
  not_ok "ok: systemd-analyze verify is clean for SGLang's units (exit $verify_rc)"
  printf '  %s\n' "$verify_out"
fi
# (n8n.service is not verified: verify insists on /usr/bin/docker, which
# Lambda's images have and this tree does not.)

# A reboot: nothing of the first boot runs again (the image's-host-keys
# removal is once per instance), the daemon comes back on its own with the
# same lease, and the host key is still the pinned one.
lease=$(curl -fsS --max-time 5 -H @"$work/auth" "http://127.0.0.1:$listen/status" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["lease_deadline"])' 2>/dev/null || echo none)
soong_machine_stop ci-ok
soong_machine_boot ci-ok
soong_machine_wait ci-ok 100 systemctl is-active --quiet soong-daemon.service || true
check "reboot: soong-daemon.service is active again" test "$(soong_machine_exec ci-ok systemctl is-active soong-daemon.service || true)" = active
lease_after=$(curl -fsS --max-time 5 -H @"$work/auth" "http://127.0.0.1:$listen/status" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["lease_deadline"])' 2>/dev/null || echo none)
check "reboot: the lease deadline is unchanged ($lease)" test "$lease" != none -a "$lease_after" = "$lease"
check "reboot: the host key is still the pinned one" test -z "$(diff "$root/etc/ssh/ssh_host_ed25519_key" "$work/hostkey" 2>&1)"
installs=$(soong_machine_journal ci-ok -t soong-provision -o cat 2>/dev/null | grep -c '^installed ' || true)
check "reboot: the daemon was not installed again (this boot's journal: $installs installs)" test "$installs" = 0
soong_machine_destroy ci-ok

# --- 3. a wrong sha256 -----------------------------------------------------
soong_machine_create ci-bad
root=$(soong_machine_root ci-bad)
seed ci-bad bad
soong_machine_boot ci-bad
status=$(wait_cloud_init ci-bad)
check "bad sha256: cloud-init reports an error (status: $status)" test "$status" = error
check "bad sha256: the credentials are still kept in a 0700 root directory" test "$(file_mode "$root/etc/soong/credentials")" = "700 root:root"
check "bad sha256: no daemon binary installed" test ! -e "$root/usr/local/bin/soong-daemon"
check "bad sha256: no partial download left" test -z "$(find "$root/usr/local/bin" -name 'soong-daemon*' -print -quit)"
check "bad sha256: soong-daemon.service is not running" test "$(soong_machine_exec ci-bad systemctl is-active soong-daemon.service || true)" != active
mismatch=$(soong_machine_journal ci-bad -t soong-provision -p err -o cat 2>/dev/null || true)
check "bad sha256: the journal has the mismatch at error priority" grep -q "sha256 mismatch for $binary_url" <<<"$mismatch"
check "bad sha256: cloud-init's output log says the daemon was NOT installed" grep -q 'soong-daemon NOT installed' "$root/var/log/cloud-init-output.log"
check "bad sha256: SGLang and n8n were not started without the cost guard" \
  test "$(soong_machine_exec ci-bad systemctl show -P ConditionTimestampMonotonic sglang.service || echo 0)" = 0
soong_machine_destroy ci-bad

echo "cloud-init: $passed passed, $failed failed"
[ "$failed" = 0 ]
