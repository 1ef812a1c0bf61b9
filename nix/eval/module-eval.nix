# Evaluates services.soong-daemon for a handful of configurations, without
# a VM and without the rest of NixOS, and states what must hold.
#
# `lib.evalModules` runs the module next to a shim that declares only the
# NixOS options it sets, so a typo in an option name fails here too. It works
# with the real nixpkgs lib (`nix flake check` builds this as a check that
# fails on any broken expectation) and with the stub of nix/stub-nixpkgs
# (nix/tests/run.sh reads `passthru.result` with `nix eval --json`).
#
# It also compares the unit's [Service] directives with the shipped unit,
# systemd/soong-daemon.service.in, so the two cannot drift.
{ lib, pkgs, self }:
let
  shim = {
    options = {
      assertions = lib.mkOption { type = lib.types.listOf lib.types.anything; default = [ ]; };
      warnings = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      environment.etc = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
      networking.firewall.allowedTCPPorts = lib.mkOption { type = lib.types.listOf lib.types.port; default = [ ]; };
      systemd.services = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
    };
  };

  secrets = {
    enable = true;
    apiKeyFile = "/run/keys/lambda-api-key";
    tokenFile = "/run/keys/soong-token";
    instance.name = "soong-eval";
  };

  evaluate = services-soong-daemon:
    let
      inherit ((lib.evalModules {
        specialArgs = { inherit pkgs; };
        modules = [ shim self.nixosModules.default { services.soong-daemon = services-soong-daemon; } ];
      })) config;
      etc = config.environment.etc."soong/daemon.yaml" or null;
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config) warnings;
      firewallPorts = config.networking.firewall.allowedTCPPorts;
      unit = config.systemd.services.soong-daemon or null;
      settings = config.services.soong-daemon.settings;
      configText = if etc == null then null else (etc.source.unchecked or etc.source).text;
    };

  scenarios = {
    minimal = evaluate secrets;
    full = evaluate (secrets // {
      listen = "127.0.0.1:8081";
      instance = { id = "0920582c7ff041399e34823a0be62549"; name = "soong-eval"; launchedAt = "2026-12-01T10:00:00Z"; };
      policy = { idleTimeout = "20m"; lease = "3h"; maxLease = "6h"; hardTimeout = "7h"; };
      activity = { ports = [ 8000 5678 ]; terminals = false; sampleInterval = "5s"; };
      worker = { url = "https://soong-watchdog.example.workers.dev"; tokenFile = "/run/keys/worker-token"; heartbeatInterval = "30s"; };
      settings.pre_terminate = "systemctl stop sglang";
    });
    settingsWin = evaluate (secrets // { policy.lease = "3h"; settings.policy.lease = "2h"; });
    disabled = evaluate (secrets // { enable = false; });
    openFirewallOnAllAddresses = evaluate (secrets // { listen = "0.0.0.0:8080"; openFirewall = true; });
    openFirewallOnLoopback = evaluate (secrets // { openFirewall = true; });
    noSecrets = evaluate { enable = true; instance.name = "soong-eval"; };
    leaseOverMaxLease = evaluate (secrets // { policy.lease = "9h"; });
    maxLeaseOverHardTimeout = evaluate (secrets // { policy.maxLease = "10h"; });
    maxLeaseOverHardTimeoutViaSettings = evaluate (secrets // { settings.policy = { lease = "1h"; max_lease = "1h 30m"; hard_timeout = "1h"; }; });
    zeroIdleTimeout = evaluate (secrets // { policy.idleTimeout = "0s"; });
    storePathSecret = evaluate (secrets // { apiKeyFile = "${builtins.storeDir}/00000000000000000000000000000000-lambda-api-key"; });
    literalSecret = evaluate (secrets // { tokenFile = "s3cr3t-literal-token"; });
    nixPathSecret = evaluate (secrets // { tokenFile = ./module-eval.nix; });
    inlineSecretInSettings = evaluate (secrets // { settings.lambda.api_key = "s3cr3t-inline-key"; });
    workerWithoutToken = evaluate (secrets // { worker.url = "https://soong-watchdog.example.workers.dev"; });
    noIdentity = evaluate (removeAttrs secrets [ "instance" ]);
    stateDirThroughSettings = evaluate (secrets // { settings.state_dir = "/srv/soong"; });
    listenThroughSettings = evaluate (secrets // { settings.listen = "0.0.0.0:9090"; openFirewall = true; });
    stateDirElsewhere = evaluate (secrets // { stateDir = "/var/lib/soong/state"; });
  };

  # ---- the shipped unit, parsed -------------------------------------------

  shippedUnitPath = self + "/systemd/soong-daemon.service.in";
  shippedUnitExists = builtins.pathExists shippedUnitPath;
  daemonPackage = self.packages.${pkgs.stdenv.hostPlatform.system}.soong-daemon;

  # A unit file as { Section = { Key = [ "value" ... ]; }; }, values in file
  # order, backslash continuations joined, comments and blank lines dropped.
  parseUnit = text:
    let
      joined = builtins.replaceStrings [ "\\\n" ] [ " " ] text;
      lines = lib.filter builtins.isString (builtins.split "\n" joined);
      step = acc: line:
        let
          section = builtins.match "[[:space:]]*[[]([A-Za-z]+)[]][[:space:]]*" line;
          directive = builtins.match "[[:space:]]*([A-Za-z]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]]|)[[:space:]]*" line;
          key = builtins.elemAt directive 0;
          current = acc.sections.${acc.section} or { };
        in
        if section != null then acc // { section = builtins.head section; }
        else if directive == null || acc.section == null then acc
        else acc // {
          sections = acc.sections // {
            ${acc.section} = current // { ${key} = (current.${key} or [ ]) ++ [ (builtins.elemAt directive 1) ]; };
          };
        };
    in
    (builtins.foldl' step { section = null; sections = { }; } lines).sections;

  # The template filled in the way the module fills it in.
  shippedUnit = parseUnit (builtins.replaceStrings
    [ "@bindir@" "@config@" ]
    [ "${daemonPackage}/bin" "/etc/soong/daemon.yaml" ]
    (builtins.readFile shippedUnitPath));

  # Values as systemd reads them: booleans as true/false; each line split
  # into words. A directive's lines are compared as one list of words (so
  # `X=a b` equals `X=a` + `X=b`), except where a line starts with `~`,
  # which negates that whole line: then line by line.
  normaliseWord = w: { yes = "true"; on = "true"; no = "false"; off = "false"; }.${w} or w;
  lineWords = v: map normaliseWord (lib.filter (w: builtins.isString w && w != "") (builtins.split "[[:space:]]+" v));
  negates = values: lib.any (v: lib.hasPrefix "~" v) values;
  comparable = values: if negates values then map lineWords values else lib.concatMap lineWords values;
  sameValues = a: b:
    if negates a || negates b then map lineWords a == map lineWords b
    else comparable a == comparable b;
  moduleValues = v:
    if builtins.isBool v then [ (if v then "true" else "false") ]
    else if builtins.isList v then lib.concatMap moduleValues v
    else [ (toString v) ];

  drift =
    let
      shipped = shippedUnit.Service or { };
      # The full scenario configures a worker, so it loads all credentials.
      unit = scenarios.full.unit;
      ours = lib.mapAttrs (_: moduleValues) unit.serviceConfig;
      keys = lib.unique (builtins.attrNames shipped ++ builtins.attrNames ours);
      # LoadCredential's sources are host-specific: compare the names only.
      compared = lib.filter (k: k != "LoadCredential") keys;
      credentialNames = values: map (v: builtins.head (lib.splitString ":" v)) values;
      mismatch = directive: shippedValue: moduleValue: { inherit directive; shipped = shippedValue; module = moduleValue; };
      # [Unit] and [Install] directives and the NixOS options that write them.
      unitOptions = {
        Description = [ unit.description ];
        Documentation = unit.documentation or [ ];
        Wants = unit.wants;
        After = unit.after;
        StartLimitIntervalSec = [ (toString unit.startLimitIntervalSec) ];
      };
      installOptions.WantedBy = unit.wantedBy;
      compareSection = name: options:
        let
          section = shippedUnit.${name} or { };
          sectionKeys = lib.unique (builtins.attrNames section ++ builtins.attrNames options);
        in
        map (k: mismatch "[${name}] ${k}" (section.${k} or null) (options.${k} or null))
          (lib.filter (k: !(sameValues (section.${k} or [ ]) (options.${k} or [ ]))) sectionKeys);
    in
    {
      mismatches =
        map (k: mismatch "[Service] ${k}" (shipped.${k} or null) (ours.${k} or null))
          (lib.filter (k: !(sameValues (shipped.${k} or [ ]) (ours.${k} or [ ]))) compared)
        ++ lib.optional (credentialNames (shipped.LoadCredential or [ ]) != credentialNames ours.LoadCredential)
          (mismatch "[Service] LoadCredential (names)" (shipped.LoadCredential or null) ours.LoadCredential)
        ++ compareSection "Unit" unitOptions
        ++ compareSection "Install" installOptions;
    };

  # ---- expectations ---------------------------------------------------------

  has = s: needle: builtins.elem needle s.failedAssertions
    || lib.any (m: lib.hasInfix needle m) s.failedAssertions;
  onlyFails = s: needle: s.failedAssertions != [ ] && lib.all (m: lib.hasInfix needle m) s.failedAssertions;
  sc = (scenarios.full.unit).serviceConfig;
  minimalText = scenarios.minimal.configText;
  fullText = scenarios.full.configText;
  expect = name: ok: { inherit name ok; };

  expectations = [
    (expect "a valid configuration fails no assertion and warns nothing"
      (scenarios.minimal.failedAssertions == [ ] && scenarios.minimal.warnings == [ ]
        && scenarios.full.failedAssertions == [ ] && scenarios.full.warnings == [ ]))
    (expect "the unit is Type=notify with a watchdog and always restarts"
      (sc.Type == "notify" && sc ? WatchdogSec && sc.Restart == "always"))
    (expect "secrets reach the unit only through LoadCredential"
      (sc.LoadCredential == [
        "token:/run/keys/soong-token"
        "lambda-api-key:/run/keys/lambda-api-key"
        "worker-token:/run/keys/worker-token"
      ]))
    (expect "the unit runs as a dynamic user with its state directory"
      (sc.DynamicUser && sc.StateDirectory == "soong-daemon"))
    (expect "a stateDir under /var/lib becomes the StateDirectory"
      (scenarios.stateDirElsewhere.unit.serviceConfig.StateDirectory == "soong/state"))
    (expect "RestrictAddressFamilies allows AF_NETLINK for socket sampling"
      (builtins.elem "AF_NETLINK" sc.RestrictAddressFamilies))
    (expect "the daemon reads /etc/soong/daemon.yaml"
      (lib.hasSuffix "/bin/soong-daemon --config /etc/soong/daemon.yaml" sc.ExecStart))
    (expect "the config names the credential files and holds no secret key"
      (lib.hasInfix "token_file: \"/run/credentials/soong-daemon.service/token\"" fullText
        && lib.hasInfix "api_key_file: \"/run/credentials/soong-daemon.service/lambda-api-key\"" fullText
        && lib.hasInfix "token_file: \"/run/credentials/soong-daemon.service/worker-token\"" fullText
        && builtins.match "(.*\n)?[[:space:]]*(token|api_key):.*" fullText == null
        && !(lib.hasInfix "/run/keys" fullText)))
    (expect "the typed options are written as the daemon's keys"
      (lib.all (line: lib.hasInfix line fullText) [
        "listen: \"127.0.0.1:8081\""
        "  id: \"0920582c7ff041399e34823a0be62549\""
        "  launched_at: \"2026-12-01T10:00:00Z\""
        "  idle_timeout: \"20m\""
        "  max_lease: \"6h\""
        "  hard_timeout: \"7h\""
        "  ports: [8000,5678]"
        "  terminals: false"
        "  sample_interval: \"5s\""
        "  heartbeat_interval: \"30s\""
        "  url: \"https://soong-watchdog.example.workers.dev\""
        "pre_terminate: \"systemctl stop sglang\""
        "state_dir: \"/var/lib/soong-daemon\""
      ]))
    (expect "the defaults are DESIGN.md's"
      (lib.all (line: lib.hasInfix line minimalText) [
        "listen: \"127.0.0.1:8080\""
        "  api_url: \"https://cloud.lambda.ai/api/v1\""
        "  idle_timeout: \"30m\""
        "  lease: \"4h\""
        "  max_lease: \"8h\""
        "  hard_timeout: \"8h\""
        "  ports: [8000]"
        "  terminals: true"
        "  sample_interval: \"2s\""
      ] && !(lib.hasInfix "worker:" minimalText)))
    (expect "settings win over the typed options"
      (scenarios.settingsWin.settings.policy.lease == "2h"))
    (expect "a disabled module defines no unit and no config"
      (scenarios.disabled.unit == null && scenarios.disabled.configText == null
        && scenarios.disabled.failedAssertions == [ ]))
    (expect "openFirewall opens the listen port"
      (scenarios.openFirewallOnAllAddresses.firewallPorts == [ 8080 ]
        && scenarios.minimal.firewallPorts == [ ]))
    (expect "openFirewall opens the port of a listen address set through settings"
      (scenarios.listenThroughSettings.firewallPorts == [ 9090 ]))
    (expect "a state_dir set through settings fails"
      (onlyFails scenarios.stateDirThroughSettings "set stateDir rather than settings.state_dir"))
    (expect "listening beyond loopback warns"
      (lib.any (lib.hasInfix "plain HTTP") scenarios.openFirewallOnAllAddresses.warnings))
    (expect "openFirewall on a loopback listener warns"
      (lib.any (lib.hasInfix "loopback only") scenarios.openFirewallOnLoopback.warnings))
    (expect "enabling without apiKeyFile and tokenFile fails"
      (has scenarios.noSecrets "apiKeyFile must be set" && has scenarios.noSecrets "tokenFile must be set"))
    (expect "a lease longer than maxLease fails"
      (onlyFails scenarios.leaseOverMaxLease "longer than maxLease"))
    (expect "a maxLease longer than hardTimeout fails"
      (onlyFails scenarios.maxLeaseOverHardTimeout "longer than hardTimeout"))
    (expect "the policy assertions read durations given through settings"
      (onlyFails scenarios.maxLeaseOverHardTimeoutViaSettings "longer than hardTimeout"))
    (expect "a zero idle timeout fails"
      (onlyFails scenarios.zeroIdleTimeout "idle_timeout must be longer than zero"))
    (expect "a secret file in the Nix store fails"
      (onlyFails scenarios.storePathSecret "points into the Nix store"))
    (expect "a literal secret instead of a path fails without echoing it"
      (onlyFails scenarios.literalSecret "looks like the secret itself"
        && !(lib.any (lib.hasInfix "s3cr3t") scenarios.literalSecret.failedAssertions)))
    (expect "a Nix path literal as a secret file fails"
      (onlyFails scenarios.nixPathSecret "is a Nix path"))
    (expect "an inline secret in settings fails"
      (onlyFails scenarios.inlineSecretInSettings "settings.lambda.api_key would put a secret"))
    (expect "a worker url without its token file fails"
      (onlyFails scenarios.workerWithoutToken "worker.url and worker.tokenFile go together"))
    (expect "a config without instance id or name fails"
      (onlyFails scenarios.noIdentity "set instance.id or instance.name"))
    (expect "the unit matches systemd/soong-daemon.service.in (is it tracked by git?)"
      (shippedUnitExists && drift.mismatches == [ ]))
  ];

  failures = map (e: e.name) (lib.filter (e: !e.ok) expectations);

  # What run.sh prints: one line per expectation, then any drift.
  report = builtins.concatStringsSep "\n"
    (
      map (e: (if e.ok then "ok   " else "FAIL ") + e.name) expectations
        ++ lib.optionals (shippedUnitExists && drift.mismatches != [ ]) (
        [ "" "directives that differ from systemd/soong-daemon.service.in:" ]
          ++ map (m: "  ${m.directive}: shipped ${builtins.toJSON m.shipped}, module ${builtins.toJSON m.module}") drift.mismatches
          ++ [ "hint: make systemd.services.soong-daemon in nixos-module/default.nix say what the unit says (or change the unit, for every installer)" ]
      )
        ++ lib.optional (!shippedUnitExists) "\nsystemd/soong-daemon.service.in is not in the flake's source (is it tracked by git?)"
    ) + "\n";

  result = {
    inherit expectations failures shippedUnitExists report;
    drift = if shippedUnitExists then drift else null;
    scenarios = lib.mapAttrs (_: s: removeAttrs s [ "unit" ] // { serviceConfig = if s.unit == null then null else s.unit.serviceConfig; }) scenarios;
  };
in
pkgs.runCommand "soong-daemon-module-eval"
{
  passthru = { inherit result; };
  failures = builtins.concatStringsSep "\n" failures;
} ''
  if [ -n "$failures" ]; then
    echo "services.soong-daemon: broken expectations:" >&2
    echo "$failures" >&2
    exit 1
  fi
  touch $out
''
