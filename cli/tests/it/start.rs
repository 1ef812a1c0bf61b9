//! `soong start` against the simulator: validation before any money is
//! spent, the exact launch request, and recovery from lost answers.

use lambda_sim::SimConfig;

use crate::common::TestContext;
use crate::soong_snapshot;

#[test]
fn dry_run_prints_the_request_with_secrets_masked() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = soong_snapshot!(context, ["start", "--dry-run", "--model", "llama-3.1-8b"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        {
          "file_system_names": [
            "coding-stack"
          ],
          "instance_type_name": "gpu_1x_a10",
          "name": "[NAME]",
          "region_name": "us-west-1",
          "ssh_key_names": [
            "default"
          ],
          "tags": [
            {
              "key": "soong:managed",
              "value": "true"
            },
            {
              "key": "soong:launched-at",
              "value": "[UNIX]"
            },
            {
              "key": "soong:hard-deadline",
              "value": "[UNIX]"
            },
            {
              "key": "soong:lease-deadline",
              "value": "[UNIX]"
            },
            {
              "key": "soong:model",
              "value": "llama-3.1-8b"
            }
          ],
          "user_data": "<below>"
        }
        --- user-data (secrets masked) ---
        #cloud-config
        # soong: user-data for one Lambda Cloud instance (DESIGN.md §3.5).
        # Rendered by the CLI: every placeholder (a name in double braces) is
        # replaced by its value, verbatim;
        # names, formats and meanings are in cloud-init/README.md and
        # cloud-init/variables.json. *_b64 values are base64 so that no value
        # needs YAML or shell quoting.
        #
        # Order matters: the cost guard (soong-daemon) is installed and started
        # first; SGLang and n8n start after, without blocking cloud-init.

        # The host key is the one the CLI generated and pins (written below):
        # cloud-init must neither delete it nor generate others.
        ssh_deletekeys: false
        # Only missing key types are generated, and ed25519 is written below.
        ssh_genkeytypes: [ed25519]
        # ...but host keys baked into the image go, once per instance, before
        # write_files puts the pinned one in place (bootcmd runs first).
        bootcmd:
          - [cloud-init-per, instance, soong-remove-image-host-keys, sh, -c, 'rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub']

        write_files:
          # --- SSH host key ---------------------------------------------------
          - path: /etc/ssh/ssh_host_ed25519_key
            owner: root:root
            permissions: '0600'
            encoding: b64
            content: "********"
          - path: /etc/ssh/ssh_host_ed25519_key.pub
            owner: root:root
            permissions: '0644'
            content: |
              ssh-ed25519 [PUBLIC KEY] [NAME]

          # --- soong-daemon: config and credentials ----------------------------
          - path: /etc/soong/daemon.yaml
            owner: root:root
            permissions: '0644'
            encoding: b64
            content: "[BASE64]"
          - path: /etc/soong/credentials/token
            owner: root:root
            permissions: '0600'
            encoding: b64
            content: "********"
          - path: /etc/soong/credentials/lambda-api-key
            owner: root:root
            permissions: '0600'
            encoding: b64
            content: "********"
          - path: /etc/soong/credentials/worker-token
            owner: root:root
            permissions: '0600'
            encoding: b64
            content: "********"
          - path: /etc/soong/credentials/hf-token
            owner: root:root
            permissions: '0600'
            encoding: b64
            content: "********"
          - path: /etc/soong/daemon-binary.conf
            owner: root:root
            permissions: '0644'
            content: |
              url=https://example.com/soong/soong-daemon-x86_64-linux
              sha256=5f2b1c0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b

          # --- soong-daemon: installer and unit --------------------------------
          - path: /usr/local/lib/soong/install-daemon
            owner: root:root
            permissions: '0755'
            content: |
              #!/bin/sh
              # Installs soong-daemon from the URL in /etc/soong/daemon-binary.conf,
              # only if its sha256 is the pinned one, then starts the unit.
              set -eu
              conf=/etc/soong/daemon-binary.conf
              dest=/usr/local/bin/soong-daemon
              log() {
                echo "soong-provision: $*" >&2
                logger -t soong-provision -p user.info -- "$*" 2>/dev/null || true
              }
              fail() {
                echo "soong-provision: error: $*" >&2
                logger -t soong-provision -p user.err -- "error: $*" 2>/dev/null || true
                exit 1
              }
              # write_files made the directory 0755; the secrets' directory is 0700.
              chmod 0700 /etc/soong/credentials
              url=$(sed -n 's/^url=//p' "$conf")
              sha256=$(sed -n 's/^sha256=//p' "$conf")
              [ -n "$url" ] || fail "no url= in $conf"
              echo "$sha256" | grep -Eqx '[0-9a-f]{64}' || fail "sha256= in $conf is not 64 lowercase hex digits"
              if [ -x "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha256" ]; then
                log "$dest is already the pinned binary (sha256 $sha256)"
              else
                tmp=$(mktemp "$dest.download.XXXXXX")
                trap 'rm -f "$tmp"' EXIT
                attempt=1
                until curl --fail --silent --show-error --location --proto-redir '=https' \
                  --connect-timeout 10 --max-time 300 --retry 3 --retry-delay 2 \
                  --output "$tmp" "$url"; do
                  [ "$attempt" -lt 5 ] || fail "cannot download soong-daemon from $url ($attempt attempts); soong-daemon NOT installed"
                  log "downloading soong-daemon from $url failed (attempt $attempt); retrying in $((attempt * 5))s"
                  sleep $((attempt * 5))
                  attempt=$((attempt + 1))
                done
                got=$(sha256sum "$tmp" | cut -d' ' -f1)
                [ "$got" = "$sha256" ] || fail "sha256 mismatch for $url: expected $sha256, got $got; soong-daemon NOT installed"
                chmod 0755 "$tmp"
                mv -f "$tmp" "$dest"
                trap - EXIT
                log "installed $dest from $url (sha256 $sha256)"
              fi
              "$dest" check-config /etc/soong/daemon.yaml >&2 || fail "/etc/soong/daemon.yaml is not a valid config; soong-daemon NOT started"
              systemctl daemon-reload
              systemctl enable soong-daemon.service
              systemctl start soong-daemon.service || fail "soong-daemon.service did not start (journalctl -u soong-daemon)"
              log "soong-daemon.service is $(systemctl is-active soong-daemon.service)"
          # systemd/soong-daemon.service.in rendered by systemd/render.sh (defaults).
          # Do not edit here: cloud-init/update-unit.sh copies it (a test checks).
          - path: /etc/systemd/system/soong-daemon.service
            owner: root:root
            permissions: '0644'
            content: |
              # soong-daemon: the on-instance cost guard (DESIGN.md §2, §3.2).
              #
              # The one definition of the unit: cloud-init, Ansible and the NixOS module
              # all install this file, rendered by systemd/render.sh (which only fills in
              # the placeholders below, between at-signs). Reference and rationale: docs/reference/systemd.md.

              [Unit]
              Description=soong-daemon: terminates this instance when idle, at lease end or at its hard timeout
              Wants=network-online.target
              After=network-online.target
              # A cost guard never gives up restarting: no start rate limit.
              StartLimitIntervalSec=0

              [Service]
              Type=notify
              NotifyAccess=main
              ExecStart=/usr/local/bin/soong-daemon --config /etc/soong/daemon.yaml
              # READY=1 once the listener is bound and the state loaded; WATCHDOG=1 from
              # the enforcement loop, so a hung loop (not just a dead process) is restarted.
              WatchdogSec=[DURATION]
              TimeoutStartSec=[DURATION]
              TimeoutStopSec=[DURATION]
              Restart=always
              RestartSec=[DURATION]
              Environment=SOONG_LOG=info

              # Secrets: copied by systemd into /run/credentials/soong-daemon.service/
              # (readable by this service only); the config names them there.
              LoadCredential=token:/etc/soong/credentials/token
              LoadCredential=lambda-api-key:/etc/soong/credentials/lambda-api-key
              LoadCredential=worker-token:/etc/soong/credentials/worker-token

              # An unprivileged user of its own; its state survives restarts and reboots.
              DynamicUser=yes
              StateDirectory=soong-daemon
              StateDirectoryMode=0700
              UMask=0077

              # Hardening. The daemon needs: TCP out (the Lambda API, the worker), its
              # loopback listener, netlink sock_diag (connections on the activity ports),
              # /dev/pts (terminal activity) and /proc/stat (boot time).
              CapabilityBoundingSet=
              AmbientCapabilities=
              NoNewPrivileges=yes
              ProtectSystem=strict
              ProtectHome=yes
              PrivateTmp=yes
              PrivateDevices=yes
              PrivateUsers=yes
              PrivateIPC=yes
              ProtectClock=yes
              ProtectHostname=yes
              ProtectKernelTunables=yes
              ProtectKernelModules=yes
              ProtectKernelLogs=yes
              ProtectControlGroups=yes
              ProtectProc=invisible
              RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
              RestrictNamespaces=yes
              RestrictRealtime=yes
              RestrictSUIDSGID=yes
              LockPersonality=yes
              MemoryDenyWriteExecute=yes
              RemoveIPC=yes
              SystemCallArchitectures=native
              SystemCallFilter=@system-service
              SystemCallFilter=~@privileged @resources
              SystemCallErrorNumber=EPERM

              [Install]
              WantedBy=multi-user.target

          # --- SGLang -------------------------------------------------------------
          - path: /etc/soong/sglang.env
            owner: root:root
            permissions: '0644'
            content: |
              SOONG_MODEL_ID=llama-3.1-8b
              SOONG_MODEL_HF_PATH=meta-llama/Llama-3.1-8B-Instruct
              SOONG_MODEL_SERVED_NAME=llama-3.1-8b
              SOONG_MODEL_QUANTIZATION=
              SOONG_MODEL_TP_SIZE=1
              SOONG_MODEL_CONTEXT_LENGTH=32768
              SOONG_SGLANG_VERSION=0.4.6.post5
              SOONG_SGLANG_PYTHON=/opt/soong/sglang/bin/python
              HF_HOME=/lambda/nfs/coding-stack/soong/huggingface
              SOONG_PIP_CACHE_DIR=/lambda/nfs/coding-stack/soong/pip-cache
          - path: /usr/local/lib/soong/install-sglang
            owner: root:root
            permissions: '0755'
            content: |
              #!/bin/sh
              # Installs the pinned SGLang into /opt/soong/sglang-VERSION (a venv),
              # the pip cache on the persistent filesystem so the next launch is fast.
              set -eu
              . /etc/soong/sglang.env
              venv=/opt/soong/sglang-$SOONG_SGLANG_VERSION
              export PIP_CACHE_DIR="$SOONG_PIP_CACHE_DIR" PIP_DISABLE_PIP_VERSION_CHECK=1
              python3 -m venv --help >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; }
              rm -rf "$venv"
              python3 -m venv "$venv"
              "$venv/bin/pip" install "sglang[all]==$SOONG_SGLANG_VERSION"
              ln -sfn "$venv" /opt/soong/sglang
              touch "$venv/.soong-installed"
          - path: /usr/local/lib/soong/sglang-launch
            owner: root:root
            permissions: '0755'
            content: |
              #!/bin/sh
              # Starts SGLang with the model's flags from /etc/soong/sglang.env.
              set -eu
              set -- --model-path "$SOONG_MODEL_HF_PATH" \
                --served-model-name "$SOONG_MODEL_SERVED_NAME" \
                --tp-size "$SOONG_MODEL_TP_SIZE" \
                --context-length "$SOONG_MODEL_CONTEXT_LENGTH" \
                --host 127.0.0.1 --port 8000
              if [ -n "${SOONG_MODEL_QUANTIZATION:-}" ]; then
                set -- "$@" --quantization "$SOONG_MODEL_QUANTIZATION"
              fi
              exec "$SOONG_SGLANG_PYTHON" -m sglang.launch_server "$@"
          - path: /etc/systemd/system/soong-sglang-install.service
            owner: root:root
            permissions: '0644'
            content: |
              [Unit]
              Description=Install SGLang 0.4.6.post5 (soong)
              Wants=network-online.target
              After=network-online.target
              ConditionPathExists=!/opt/soong/sglang-0.4.6.post5/.soong-installed

              [Service]
              Type=oneshot
              RemainAfterExit=yes
              ExecStart=/usr/local/lib/soong/install-sglang
              TimeoutStartSec=60min
          - path: /etc/systemd/system/sglang.service
            owner: root:root
            permissions: '0644'
            content: |
              [Unit]
              Description=SGLang serving llama-3.1-8b on [ADDR] (soong)
              Wants=network-online.target
              Requires=soong-sglang-install.service
              After=network-online.target soong-sglang-install.service

              [Service]
              User=ubuntu
              EnvironmentFile=/etc/soong/sglang.env
              # The token is a file the Hugging Face client reads (HF_TOKEN_PATH),
              # never an environment variable or a command-line argument.
              LoadCredential=hf-token:/etc/soong/credentials/hf-token
              Environment=HF_TOKEN_PATH=%d/hf-token
              ExecStart=/usr/local/lib/soong/sglang-launch
              Restart=on-failure
              RestartSec=[DURATION]

              [Install]
              WantedBy=multi-user.target

          # --- n8n ----------------------------------------------------------------
          - path: /etc/systemd/system/n8n.service
            owner: root:root
            permissions: '0644'
            content: |
              [Unit]
              Description=n8n 1.94.1 on [ADDR] (soong)
              Wants=network-online.target docker.service
              After=network-online.target docker.service

              [Service]
              Environment=N8N_IMAGE=docker.n8n.io/n8nio/n8n:1.94.1
              ExecStartPre=/usr/bin/install -d -o ubuntu -g ubuntu /lambda/nfs/coding-stack/soong/n8n
              ExecStartPre=/usr/bin/docker pull ${N8N_IMAGE}
              ExecStartPre=-/usr/bin/docker rm --force soong-n8n
              ExecStart=/usr/bin/docker run --rm --name soong-n8n --user 1000:1000 --publish [ADDR]:5678 --volume /lambda/nfs/coding-stack/soong/n8n:/home/node/.n8n ${N8N_IMAGE}
              ExecStop=/usr/bin/docker stop soong-n8n
              Restart=on-failure
              RestartSec=[DURATION]
              TimeoutStartSec=20min

              [Install]
              WantedBy=multi-user.target

        runcmd:
          # The cost guard first; if it cannot be installed, stop here (cloud-init
          # reports the error, the CLI sees no healthy daemon and says so).
          - /usr/local/lib/soong/install-daemon || exit 1
          - systemctl daemon-reload
          - systemctl enable --now --no-block soong-sglang-install.service sglang.service n8n.service
        --- /etc/soong/daemon.yaml (daemon_config_b64, decoded) ---
        listen: 0.0.0.0:[PORT]
        token_file: /run/credentials/soong-daemon.service/token
        lambda:
          api_url: http://[ADDR]/api/v1
          api_key_file: /run/credentials/soong-daemon.service/lambda-api-key
        instance:
          name: [NAME]
          launched_at: [TIME]
        policy:
          idle_timeout: 30m
          lease: 4h
          max_lease: 8h
          hard_timeout: 8h
        activity:
          ports:
          - 8000
          terminals: true
          sample_interval: [DURATION]
        state_dir: /var/lib/soong-daemon
        pre_terminate: null
        pre_terminate_timeout: 1m

        ----- stderr -----
        Model:     llama-3.1-8b (20.5 GiB of VRAM needed)
        Instance:  gpu_1x_a10 (1x A10 (24 GB PCIe)) in us-west-1
        Name:      [NAME]
        Price:     $0.75/h
        Lease:     [DURATION] (until [CLOCK]), extendable to [DURATION]; hard stop at [CLOCK]
        Idle stop: after [DURATION] without activity
        Cost:      at most $3.00 for the lease, $6.00 if extended to the maximum
        Dry run: nothing was launched.
    "#);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("test-daemon-token"), "token leaked");
    assert!(!stdout.contains(&context.sim().api_key()), "API key leaked");
    let launches = context
        .sim()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/launch"))
        .count();
    assert_eq!(launches, 0);
}

#[test]
fn an_unknown_model_suggests_close_ones() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--model", "llama-3.1-7b", "-y"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: unknown model `llama-3.1-7b`

        hint: did you mean `llama-3.1-70b`, `llama-3.1-8b`? (`soong models list` shows them all)
    "#);
}

#[test]
fn no_capacity_exits_3_and_names_where_there_is() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--gpu", "gpu_1x_gh200", "--model", "llama-3.1-8b", "-y"], @r#"
        success: false
        exit_code: 3
        ----- stdout -----

        ----- stderr -----
        error: `gpu_1x_gh200` has no capacity in `us-west-1`

        hint: it has capacity in us-east-3; types that fit with capacity in `us-west-1`: `gpu_1x_a10` ($0.75/h), `gpu_1x_a6000` ($0.80/h), `gpu_1x_a100` ($1.29/h)
    "#);
}

#[test]
fn a_filesystem_in_another_region_is_caught_before_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--region", "us-east-1", "-y"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: filesystem `coding-stack` is in `us-west-1`, but the launch is in `us-east-1`; it could not be attached

        hint: launch with `--region us-west-1`, or change `lambda.filesystem_name` to a filesystem in `us-east-1`
    "#);
}

#[test]
fn a_type_too_small_for_the_model_is_refused() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--model", "qwen2.5-coder-32b", "--gpu", "gpu_1x_a10", "-y"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: `qwen2.5-coder-32b` needs about 70.6 GiB of VRAM; `gpu_1x_a10` has 24 GiB (22 GiB usable)

        hint: `gpu_1x_h100_pcie` fits and has capacity in `us-west-1`
    "#);
}

#[test]
fn without_a_terminal_start_asks_for_yes() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&["start"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        crate::common::render(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`--yes`"), "{stderr}");
}

#[test]
fn a_bad_key_exits_4() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["start", "-y"])
        .env("LAMBDA_API_KEY", "not-a-key")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        crate::common::render(&output)
    );
}

#[test]
fn a_daemon_that_never_answers_is_loud_and_yes_terminates_the_instance() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.005")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(
        text.contains("never became healthy and was terminated"),
        "{text}"
    );
    // The launch request: one key, the filesystem, a soong name, the tags,
    // and user-data (redacted in the simulator's log).
    let log = context.sim().request_log();
    let launches: Vec<_> = log.iter().filter(|r| r.path.ends_with("/launch")).collect();
    assert_eq!(launches.len(), 1);
    let body = launches[0].request.as_ref().unwrap();
    assert_eq!(body["ssh_key_names"], serde_json::json!(["default"]));
    assert_eq!(
        body["file_system_names"],
        serde_json::json!(["coding-stack"])
    );
    assert!(
        body["name"]
            .as_str()
            .unwrap()
            .starts_with("soong-llama-3.1-8b-")
    );
    let tags = body["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "soong:managed" && t["value"] == "true")
    );
    assert!(body.get("user_data").is_some());
    let billing = context.sim().billing();
    assert_eq!(billing.len(), 1);
    assert!(
        !billing[0].running,
        "the unguarded instance must not keep billing"
    );
}

#[test]
fn a_5xx_on_launch_looks_for_the_name_and_launches_once() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context.sim().set_faults(lambda_sim::Faults {
        scripted: vec![lambda_sim::ScriptedFault {
            method: Some("POST".into()),
            path: "/instance-operations/launch".into(),
            status: 503,
            count: 1,
            retry_after: None,
        }],
        ..lambda_sim::Faults::default()
    });
    let output = context
        .command(&["start", "-y", "--no-wait", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("looking for"), "{text}");
    let log = context.sim().request_log();
    let launches = log.iter().filter(|r| r.path.ends_with("/launch")).count();
    assert_eq!(
        launches, 2,
        "one failed launch, one relaunch after the name was not found"
    );
    assert_eq!(
        context.sim().billing().len(),
        1,
        "exactly one instance exists"
    );
}

#[test]
fn wait_for_capacity_launches_once_capacity_frees_up() {
    let mut config = SimConfig::for_tests();
    config.scenario.capacity = [(
        "gpu_1x_a10".to_owned(),
        [("us-west-1".to_owned(), 1)].into_iter().collect(),
    )]
    .into_iter()
    .collect();
    let context = TestContext::with_sim("valid.yaml", config);
    let first = context
        .command(&[
            "start",
            "-y",
            "--no-wait",
            "--name",
            "soong-first",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", crate::common::render(&first));
    // No capacity left: without waiting, exit 3.
    let output = context.run(&["start", "-y", "--no-wait", "--gpu", "gpu_1x_a10"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        crate::common::render(&output)
    );
    let waiting = context
        .command(&[
            "start",
            "-y",
            "--no-wait",
            "--gpu",
            "gpu_1x_a10",
            "--wait-for-capacity",
            "30s",
        ])
        .env("SOONG_WAIT_SCALE", "0.02")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stop = context
        .command(&["stop", "-y", "--instance", "soong-first"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", crate::common::render(&stop));
    let output = waiting.wait_with_output().unwrap();
    let text = crate::common::render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Capacity appeared"), "{text}");
}

#[test]
fn a_second_launch_warns_about_the_instance_already_running() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let first = context.run(&["start", "-y", "--no-wait", "--name", "soong-first"]);
    assert!(first.status.success(), "{}", crate::common::render(&first));
    let second = context.run(&["start", "-y", "--no-wait"]);
    let text = crate::common::render(&second);
    assert!(second.status.success(), "{text}");
    assert!(
        text.contains(
            "warning: already running: `soong-first` ($0.75/h); this launch adds another"
        ),
        "{text}"
    );
}

#[test]
fn an_instance_that_boots_unhealthy_is_loud_and_yes_terminates_it() {
    let mut config = SimConfig::for_tests();
    config.scenario.faults.unhealthy_rate = 1.0;
    let context = TestContext::with_sim("valid.yaml", config);
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.005")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(text.contains("`unhealthy`"), "{text}");
    assert!(
        text.contains("never became healthy and was terminated"),
        "{text}"
    );
    let billing = context.sim().billing();
    assert_eq!(billing.len(), 1);
    assert!(
        !billing[0].running,
        "the unhealthy instance no longer bills"
    );
}
