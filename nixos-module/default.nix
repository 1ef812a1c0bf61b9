# services.soong-daemon: the on-instance cost guard of soong, for NixOS hosts.
#
# Shaped like nixpkgs' ntpd-rs module: typed options for what people set,
# feeding a freeform RFC 42 `settings` that is written to
# /etc/soong/daemon.yaml (DESIGN.md §3.2) and checked at build time with
# `soong-daemon check-config`. Secrets never enter the Nix store: the module
# takes file paths and hands them to the unit with `LoadCredential=`; the
# config names the credential files under /run/credentials. The unit mirrors
# the project's one unit definition, systemd/soong-daemon.service.in,
# directive for directive; nix/eval/module-eval.nix compares the two (under
# nix/tests/run.sh here, `nix flake check` where nixpkgs is), so they cannot
# drift.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.soong-daemon;
  yaml = import ./yaml.nix;

  unitName = "soong-daemon";
  credentialsDir = "/run/credentials/${unitName}.service";
  configPath = "/etc/soong/daemon.yaml";

  # Durations in the grammar the daemon reads ("90s", "30m", "4h", "1h 30m"),
  # restricted to units this module can compare.
  durationPattern = "[0-9]+[smhd]( ?[0-9]+[smhd])*";
  durationType = lib.types.strMatching durationPattern // {
    description = "duration such as \"90s\", \"30m\", \"4h\" or \"1h 30m\"";
  };
  unitSeconds = { s = 1; m = 60; h = 3600; d = 86400; };
  # Seconds in a duration string, or null for anything else (the daemon's own
  # check-config still judges those at build time).
  toSeconds = text:
    if !(builtins.isString text) || builtins.match durationPattern text == null then null
    else
      lib.foldl'
        (sum: part: if builtins.isList part then sum + lib.toInt (builtins.elemAt part 0) * unitSeconds.${builtins.elemAt part 1} else sum)
        0
        (builtins.split "([0-9]+)([smhd])" text);

  durationOption = default: description: lib.mkOption {
    type = durationType;
    inherit default description;
    example = "90s";
  };

  # A secret is a file path on the host, read by systemd when the unit starts.
  secretFileOption = description: lib.mkOption {
    # Deliberately loose: a literal secret or a Nix path is caught by an
    # assertion below, whose message does not print the value.
    type = lib.types.nullOr (lib.types.either lib.types.str lib.types.path);
    default = null;
    example = "/run/keys/soong-daemon-token";
    description = ''
      ${description}

      A path to a file on the host, read by systemd when the unit starts and
      passed to the daemon with `LoadCredential=`. It must not be a Nix path
      literal or a file in the Nix store: both are world-readable.
    '';
  };

  # Never interpolate a Nix path (that copies it into the store); an
  # assertion rejects it, but evaluation must not copy it first.
  asPathString = value: if builtins.isPath value then toString value else value;

  secretFiles = lib.filter (s: s.value != null) [
    { option = "tokenFile"; credential = "token"; value = cfg.tokenFile; }
    { option = "apiKeyFile"; credential = "lambda-api-key"; value = cfg.apiKeyFile; }
    { option = "worker.tokenFile"; credential = "worker-token"; value = cfg.worker.tokenFile; }
  ];

  secretAssertions = lib.concatMap
    (s: [
      {
        assertion = !(builtins.isPath s.value);
        message = "services.soong-daemon.${s.option} is a Nix path, which would be copied into the world-readable Nix store; give the path as a string (\"/run/keys/...\").";
      }
      {
        assertion = builtins.isPath s.value || lib.hasPrefix "/" s.value;
        message = "services.soong-daemon.${s.option} must be an absolute path to a file holding the secret; it looks like the secret itself, which must never be in the Nix store.";
      }
      {
        assertion = builtins.isPath s.value || !(lib.hasPrefix builtins.storeDir s.value);
        message = "services.soong-daemon.${s.option} points into the Nix store, which is world-readable; keep secrets outside it (sops-nix, agenix or a file written at provisioning).";
      }
    ])
    secretFiles;

  inlineSecrets = lib.filter (s: s.present) [
    { key = "token"; option = "tokenFile"; present = cfg.settings ? token; }
    { key = "lambda.api_key"; option = "apiKeyFile"; present = (cfg.settings.lambda or { }) ? api_key; }
    { key = "worker.token"; option = "worker.tokenFile"; present = (cfg.settings.worker or { }) ? token; }
  ];

  policy = cfg.settings.policy or { };
  seconds = key: toSeconds (policy.${key} or null);
  bothKnown = a: b: a != null && b != null;
  policyAssertions =
    let
      idle = seconds "idle_timeout";
      lease = seconds "lease";
      maxLease = seconds "max_lease";
      hard = seconds "hard_timeout";
      sample = toSeconds ((cfg.settings.activity or { }).sample_interval or null);
    in
    map
      (key: {
        assertion = seconds key != 0;
        message = "services.soong-daemon: policy.${key} must be longer than zero (zero would terminate the instance at once).";
      }) [ "idle_timeout" "lease" "max_lease" "hard_timeout" ]
    ++ [
      {
        assertion = !(bothKnown lease maxLease) || lease <= maxLease;
        message = "services.soong-daemon: the lease (${policy.lease}) is longer than maxLease (${policy.max_lease}); no extension could ever reach it.";
      }
      {
        assertion = !(bothKnown maxLease hard) || maxLease <= hard;
        message = "services.soong-daemon: maxLease (${policy.max_lease}) is longer than hardTimeout (${policy.hard_timeout}); the hard timeout would cut every such lease short.";
      }
      {
        assertion = !(bothKnown sample idle) || idle == 0 || sample <= idle;
        message = "services.soong-daemon: activity.sampleInterval is longer than policy.idleTimeout; idleness could not be measured.";
      }
    ];

  # DESIGN.md §3.2's keys, from the typed options.
  settingsFromOptions = {
    inherit (cfg) listen;
    token_file = "${credentialsDir}/token";
    lambda = {
      api_url = cfg.apiUrl;
      api_key_file = "${credentialsDir}/lambda-api-key";
    };
    instance = lib.filterAttrs (_: v: v != null) {
      inherit (cfg.instance) id name;
      launched_at = cfg.instance.launchedAt;
    };
    policy = {
      idle_timeout = cfg.policy.idleTimeout;
      inherit (cfg.policy) lease;
      max_lease = cfg.policy.maxLease;
      hard_timeout = cfg.policy.hardTimeout;
    };
    activity = {
      inherit (cfg.activity) ports terminals;
      sample_interval = cfg.activity.sampleInterval;
    };
    state_dir = cfg.stateDir;
  } // lib.optionalAttrs (cfg.worker.url != null) {
    worker = {
      inherit (cfg.worker) url;
      token_file = "${credentialsDir}/worker-token";
      heartbeat_interval = cfg.worker.heartbeatInterval;
    };
  };

  # What the daemon will listen on: `settings.listen` may override `listen`.
  listen = toString (cfg.settings.listen or cfg.listen);
  listenMatch = builtins.match "(.*):([0-9]+)" listen;
  listenPort = if listenMatch == null then null else lib.toInt (lib.last listenMatch);
  listensOnLoopback = builtins.match "(127[.][0-9.]+|[[]::1[]]|localhost):[0-9]+" listen != null;

  configText = ''
    # Generated by the NixOS module services.soong-daemon; edit the module's
    # options instead. Secrets are not here: the *_file keys name systemd
    # credentials (LoadCredential=).
  '' + yaml.toYAML cfg.settings;
  configFile = pkgs.writeText "soong-daemon.yaml" configText;
  # Like ntpd-rs's module: a config the daemon would refuse fails the build,
  # not the boot. `passthru.unchecked` lets tests read the text.
  checkedConfigFile =
    if cfg.checkConfig then
      pkgs.runCommand "soong-daemon-checked.yaml"
        {
          nativeBuildInputs = [ cfg.package ];
          passthru.unchecked = configFile;
        } ''
        soong-daemon check-config ${configFile}
        ln -s ${configFile} $out
      ''
    else configFile;
in
{
  options.services.soong-daemon = {
    enable = lib.mkEnableOption "soong-daemon, which terminates this Lambda Cloud instance through the API when it goes idle, its lease ends or its hard timeout passes";

    package = lib.mkPackageOption pkgs "soong-daemon" { };

    listen = lib.mkOption {
      type = lib.types.strMatching "(.+):([0-9]+)";
      default = "127.0.0.1:8080";
      example = "0.0.0.0:8080";
      description = ''
        Address and port of the daemon's HTTP API. Loopback by default: the
        soong CLI reaches it through SSH with a pinned host key.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the port of {option}`services.soong-daemon.listen` in the firewall.";
    };

    apiUrl = lib.mkOption {
      type = lib.types.str;
      default = "https://cloud.lambda.ai/api/v1";
      description = "Base URL of the Lambda Cloud API v1.";
    };

    apiKeyFile = secretFileOption "File holding the Lambda Cloud API key the daemon terminates the instance with.";

    tokenFile = secretFileOption "File holding the bearer token of the daemon's HTTP API (the CLI's `status_daemon.token`).";

    instance = {
      id = lib.mkOption {
        type = lib.types.nullOr lib.types.nonEmptyStr;
        default = null;
        description = "The Lambda instance id this daemon guards. Set this or {option}`services.soong-daemon.instance.name`.";
      };
      name = lib.mkOption {
        type = lib.types.nullOr lib.types.nonEmptyStr;
        default = null;
        example = "soong-7f3a";
        description = "The instance's name; the daemon resolves its id through the API.";
      };
      launchedAt = lib.mkOption {
        type = lib.types.nullOr (lib.types.strMatching "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})");
        default = null;
        example = "2026-12-01T10:00:00Z";
        description = ''
          When the instance was launched (RFC 3339). Leases and the hard
          timeout count from here; unset, the daemon uses the earlier of its
          state file and the boot time, never "now".
        '';
      };
    };

    policy = {
      idleTimeout = durationOption "30m" "Terminate after this long without activity.";
      lease = durationOption "4h" "The lease granted at launch, counted from {option}`services.soong-daemon.instance.launchedAt`.";
      maxLease = durationOption "8h" "How far `soong extend` may push the lease, counted from launch.";
      hardTimeout = durationOption "8h" "The absolute limit, counted from launch; nothing extends it.";
    };

    activity = {
      ports = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [ 8000 ];
        example = [ 8000 5678 ];
        description = "TCP ports whose connections count as activity when they move bytes.";
      };
      terminals = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = "Whether interactive terminals with recent input or output count as activity.";
      };
      sampleInterval = durationOption "2s" "How often activity is sampled.";
    };

    stateDir = lib.mkOption {
      type = lib.types.strMatching "/var/lib/[^/]+(/[^/]+)*";
      default = "/var/lib/soong-daemon";
      description = ''
        Where the daemon keeps its state (deadlines survive restarts and
        reboots). Under /var/lib: the unit's `StateDirectory=` creates it for
        the dynamic user.
      '';
    };

    worker = {
      url = lib.mkOption {
        type = lib.types.nullOr (lib.types.strMatching "https?://.+");
        default = null;
        example = "https://soong-watchdog.example.workers.dev";
        description = "The Cloudflare Worker watchdog to send heartbeats to; null sends none.";
      };
      tokenFile = secretFileOption "File holding this instance's heartbeat token for the worker.";
      heartbeatInterval = durationOption "60s" "How often to send a heartbeat.";
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run `soong-daemon check-config` on the generated file at build time.
        Turn off when the package cannot run on the build machine (cross
        builds).
      '';
    };

    settings = lib.mkOption {
      # JSON values: what YAML can hold that the daemon reads. The file is
      # written by ./yaml.nix rather than pkgs.formats.yaml.generate (why:
      # see there).
      type = lib.types.submodule {
        freeformType = (pkgs.formats.json { }).type;
      };
      default = { };
      example = lib.literalExpression ''
        {
          pre_terminate = "systemctl stop sglang";
          lambda.api_url = "http://127.0.0.1:9999/api/v1";
        }
      '';
      description = ''
        The daemon's configuration (DESIGN.md §3.2), written to
        {file}`${configPath}`. The typed options above set these keys with
        `mkDefault`; values here win. Secrets cannot be given here (they
        would land in the Nix store): use the `*File` options.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    # Priority of mkDefault on every key, so a value in `settings` wins.
    services.soong-daemon.settings = lib.mapAttrs
      (_: value: if builtins.isAttrs value then lib.mapAttrs (_: lib.mkDefault) value else lib.mkDefault value)
      settingsFromOptions;

    assertions = [
      {
        assertion = cfg.apiKeyFile != null;
        message = "services.soong-daemon.apiKeyFile must be set: the daemon terminates the instance through the Lambda API.";
      }
      {
        assertion = cfg.tokenFile != null;
        message = "services.soong-daemon.tokenFile must be set: the daemon's API refuses every request without a token.";
      }
      {
        assertion = (cfg.worker.url == null) == (cfg.worker.tokenFile == null);
        message = "services.soong-daemon.worker.url and worker.tokenFile go together: set both or neither.";
      }
      {
        assertion = listenPort != null;
        message = "services.soong-daemon: settings.listen must be ADDRESS:PORT.";
      }
      {
        assertion = (cfg.settings.state_dir or cfg.stateDir) == cfg.stateDir;
        message = "services.soong-daemon: set stateDir rather than settings.state_dir; the unit's StateDirectory= is derived from it, and the dynamic user can write nowhere else.";
      }
      {
        assertion = (cfg.settings.instance or { }) ? id || (cfg.settings.instance or { }) ? name;
        message = "services.soong-daemon: set instance.id or instance.name, so the daemon knows which instance it guards.";
      }
    ]
    ++ map
      (s: {
        assertion = false;
        message = "services.soong-daemon.settings.${s.key} would put a secret in the world-readable Nix store; use services.soong-daemon.${s.option}.";
      })
      inlineSecrets
    ++ secretAssertions
    ++ policyAssertions;

    warnings =
      lib.optional (cfg.openFirewall && listensOnLoopback)
        "services.soong-daemon.openFirewall opens port ${toString listenPort}, but the daemon listens on loopback only (${listen})."
      ++ lib.optional (!listensOnLoopback)
        "services.soong-daemon listens on ${listen}: its API (and bearer token) travel over plain HTTP beyond this host; the soong CLI's default is SSH to a loopback listener."
      ++ lib.optional (cfg.worker.url != null && lib.hasPrefix "http://" cfg.worker.url)
        "services.soong-daemon.worker.url is plain http://; heartbeat tokens would travel unencrypted.";

    environment.etc."soong/daemon.yaml".source = checkedConfigFile;

    networking.firewall.allowedTCPPorts = lib.optional (cfg.openFirewall && listenPort != null) listenPort;

    # Mirrors systemd/soong-daemon.service.in directive for directive
    # (nix/eval/module-eval.nix fails on any difference). Only what is
    # host-specific differs: the store path in ExecStart, and LoadCredential,
    # which takes its sources from the *File options and loads worker-token
    # only when a worker is configured (a missing credential file would stop
    # the unit from starting).
    systemd.services.soong-daemon = {
      description = "soong-daemon: terminates this instance when idle, at lease end or at its hard timeout";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      # A cost guard never gives up restarting: no start rate limit.
      startLimitIntervalSec = 0;
      restartTriggers = [ checkedConfigFile ];

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${lib.getExe cfg.package} --config ${configPath}";
        # READY=1 once the listener is bound and the state loaded; WATCHDOG=1
        # from the enforcement loop, so a hung loop (not just a dead process)
        # is restarted.
        WatchdogSec = "30s";
        TimeoutStartSec = "90s";
        TimeoutStopSec = "30s";
        Restart = "always";
        RestartSec = "2s";
        Environment = [ "SOONG_LOG=info" ];

        # Copied by systemd into ${credentialsDir}/, readable by this service
        # only; the config names them there.
        LoadCredential = map (s: "${s.credential}:${asPathString s.value}") secretFiles;

        DynamicUser = true;
        StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
        StateDirectoryMode = "0700";
        UMask = "0077";

        # The daemon needs TCP out (the Lambda API, the worker), its listener,
        # netlink sock_diag (AF_NETLINK: connections on the activity ports),
        # /dev/pts (terminal activity) and /proc/stat (boot time).
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = true;
        PrivateIPC = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
