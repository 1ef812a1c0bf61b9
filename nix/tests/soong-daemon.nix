# A NixOS VM with services.soong-daemon pointed at lambda-sim: the unit
# reaches active through Type=notify, answers /health, guards /status with
# its token, keeps the token out of the config, finds its instance by name
# through the API key credential, is restarted by the watchdog when frozen,
# and terminates its instance in the simulator on POST /shutdown. Needs
# nixpkgs and KVM: `nix flake check` or
# `nix build .#checks.x86_64-linux.soong-daemon`. (The curl calls to the
# simulator were tried against lambda-sim outside a VM.)
{ pkgs, self }:
let
  inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) lambda-sim;
  token = "vm-test-token";
in
pkgs.testers.runNixOSTest {
  name = "soong-daemon";

  nodes.machine = {
    imports = [ self.nixosModules.default ];

    systemd.services.lambda-sim = {
      wantedBy = [ "multi-user.target" ];
      before = [ "soong-daemon.service" ];
      serviceConfig = {
        ExecStart = "${lambda-sim}/bin/lambda-sim --listen 127.0.0.1:9999 --no-rate-limit";
        DynamicUser = true;
      };
    };

    # Secrets written at boot, outside the Nix store, readable by root only;
    # systemd hands them to the daemon with LoadCredential=.
    systemd.tmpfiles.rules = [
      "d /run/soong-test 0700 root root -"
      "f+ /run/soong-test/token 0600 root root - ${token}"
      "f+ /run/soong-test/lambda-api-key 0600 root root - sim-api-key"
    ];

    services.soong-daemon = {
      enable = true;
      apiUrl = "http://127.0.0.1:9999/api/v1";
      apiKeyFile = "/run/soong-test/lambda-api-key";
      tokenFile = "/run/soong-test/token";
      instance.name = "soong-vm-test";
      # Long enough that nothing terminates during the test.
      policy = { idleTimeout = "2h"; lease = "4h"; maxLease = "8h"; hardTimeout = "8h"; };
    };

    environment.systemPackages = [ pkgs.curl ];
  };

  testScript = ''
    import json

    sim = "http://127.0.0.1:9999/api/v1"
    machine.wait_for_unit("lambda-sim.service")
    machine.wait_until_succeeds(f"curl -sf -u sim-api-key: {sim}/instances")
    # The instance this daemon guards; it resolves the id from the name.
    machine.succeed(
        f"curl -sf -u sim-api-key: -X POST -H 'content-type: application/json' {sim}/instance-operations/launch "
        + "-d '{\"region_name\":\"us-west-1\",\"instance_type_name\":\"gpu_1x_a10\",\"ssh_key_names\":[\"default\"],\"name\":\"soong-vm-test\"}'"
    )
    machine.wait_for_unit("soong-daemon.service")

    with subtest("the unit is active through Type=notify with a watchdog"):
        machine.succeed("test \"$(systemctl show -P Type soong-daemon)\" = notify")
        machine.succeed("test \"$(systemctl show -P ActiveState soong-daemon)\" = active")
        machine.succeed("test \"$(systemctl show -P WatchdogUSec soong-daemon)\" != 0")

    with subtest("/health answers without a token"):
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:8080/health | grep -q '\"status\":\"ok\"'")

    status = "curl -sf -H 'Authorization: Bearer ${token}' http://127.0.0.1:8080/status"

    with subtest("/status needs the token from the credential"):
        machine.fail("curl -sf http://127.0.0.1:8080/status")
        machine.succeed(status)

    with subtest("the daemon finds its instance through the API key credential"):
        machine.wait_until_succeeds(status + " | grep -q '\"instance_id\":\"[0-9a-f]'", timeout=120)

    with subtest("the token is not in the config file or the unit"):
        machine.succeed("test -s /etc/soong/daemon.yaml && test -s /etc/systemd/system/soong-daemon.service")
        machine.fail("grep -qF ${token} /etc/soong/daemon.yaml /etc/systemd/system/soong-daemon.service")
        machine.succeed("grep -qF /run/credentials/soong-daemon.service/token /etc/soong/daemon.yaml")

    with subtest("a frozen daemon is restarted by the watchdog"):
        # WatchdogSec=30s, then TimeoutStopSec=30s before SIGKILL reaches
        # the stopped process, then Restart=always.
        machine.succeed("systemctl kill -s SIGSTOP soong-daemon")
        machine.wait_until_succeeds("test \"$(systemctl show -P NRestarts soong-daemon)\" -ge 1", timeout=180)
        machine.wait_for_unit("soong-daemon.service")
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:8080/health")

    with subtest("POST /shutdown terminates the instance through the API"):
        machine.succeed(
            "curl -sf -X POST -H 'Authorization: Bearer ${token}' -H 'content-type: application/json' "
            + "-d '{\"reason\":\"vm test\"}' http://127.0.0.1:8080/shutdown"
        )

        def terminated(_):
            instances = json.loads(machine.succeed(f"curl -sf -u sim-api-key: {sim}/instances"))["data"]
            return any(i["name"] == "soong-vm-test" and i["status"] in ("terminating", "terminated") for i in instances)

        retry(terminated, timeout=60)
  '';
}
