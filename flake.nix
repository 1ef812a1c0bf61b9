{
  description = "soong: rent a Lambda Cloud GPU in one command; never pay for a forgotten one";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # GH200 instances are aarch64.
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      inherit ((builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package) version;

      # One workspace, one Cargo.lock, one package per binary crate.
      crate = pkgs: { pname, description }:
        pkgs.rustPlatform.buildRustPackage {
          inherit pname version;
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "-p" pname ];
          # The test suites start simulators and daemons on loopback and read
          # fixtures outside the crates; they run in CI (scripts/test), not
          # in the package build.
          doCheck = false;
          meta = {
            inherit description;
            homepage = "https://github.com/soong-dev/soong";
            license = with lib.licenses; [ mit asl20 ];
            mainProgram = pname;
            platforms = systems;
          };
        };
    in
    {
      packages = forAllSystems (pkgs: rec {
        soong = crate pkgs {
          pname = "soong";
          description = "Launch Lambda Cloud GPU instances that stop costing money when forgotten";
        };
        soong-daemon = crate pkgs {
          pname = "soong-daemon";
          description = "On-instance cost guard: terminates a Lambda Cloud instance when idle or out of lease";
        };
        lambda-sim = crate pkgs {
          pname = "lambda-sim";
          description = "A local simulator of the Lambda Cloud API v1";
        };
        default = soong;
      });

      # `nix run .#soong -- start`
      apps = forAllSystems (pkgs:
        let
          soong = {
            type = "app";
            program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.soong}/bin/soong";
          };
        in
        { inherit soong; default = soong; });

      # The module with its package defaulting to this flake's build.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nixos-module ];
        config.services.soong-daemon.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.soong-daemon;
      };
      nixosModules.soong-daemon = self.nixosModules.default;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc clippy rustfmt rust-analyzer deadnix nixpkgs-fmt ];
        };
      });

      # `nix flake check`: every nix/tests/*.nix is a NixOS VM test (as in
      # harmonia); module-eval checks the module's output without a VM.
      checks = forAllSystems (pkgs:
        let
          testFiles = lib.filterAttrs (name: type: type == "regular" && lib.hasSuffix ".nix" name)
            (builtins.readDir ./nix/tests);
          vmTests = lib.mapAttrs'
            (name: _: lib.nameValuePair (lib.removeSuffix ".nix" name)
              (import (./nix/tests + "/${name}") { inherit pkgs self; }))
            testFiles;
        in
        vmTests // {
          module-eval = import ./nix/eval/module-eval.nix { inherit lib pkgs self; };
        } // lib.mapAttrs' (name: lib.nameValuePair "package-${name}") self.packages.${pkgs.stdenv.hostPlatform.system});
    };
}
