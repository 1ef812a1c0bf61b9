# A stand-in for the few nixpkgs packages and builders soong's flake and
# module touch. Derivations are plain attrsets with a fake store path: they
# can be evaluated and interpolated, never built. Builders keep their
# arguments (`writeText` keeps `text`, `runCommand` its `passthru`, as the
# real ones do), so a test can look at what would be built.
{ lib, system }:
let
  fakeHash = "00000000000000000000000000000000";
  mkDrv = name: attrs:
    attrs // {
      type = "derivation";
      inherit name system;
      outPath = "${builtins.storeDir}/${fakeHash}-${name}";
      drvPath = "${builtins.storeDir}/${fakeHash}-${name}.drv";
    };
  package = pname: mkDrv pname { inherit pname; meta.mainProgram = pname; };
in
{
  inherit lib;
  stdenv = {
    hostPlatform = { inherit system; isLinux = true; };
    buildPlatform = { inherit system; };
    isLinux = true;
  };
  writeText = name: text: mkDrv name { inherit text; };
  runCommand = name: env: buildCommand:
    mkDrv name (env // { inherit buildCommand; } // (env.passthru or { }));
  writeShellApplication = { name, ... }@args: mkDrv name (args // { meta.mainProgram = name; });
  mkShell = args: mkDrv (args.name or "nix-shell") args;
  rustPlatform.buildRustPackage = args:
    mkDrv "${args.pname}-${args.version}" (args // { meta = (args.meta or { }) // { mainProgram = args.meta.mainProgram or args.pname; }; });
  formats.json = _: {
    type = with lib.types;
      let
        valueType = nullOr (oneOf [ bool int float str path (attrsOf valueType) (listOf valueType) ]) // {
          description = "YAML value";
        };
      in
      valueType;
    generate = name: value: mkDrv name { inherit value; };
  };
  testers.runNixOSTest = test: mkDrv "vm-test-run-${test.name}" { inherit test; };
  # Tools the devShell lists.
  cargo = package "cargo";
  rustc = package "rustc";
  clippy = package "clippy";
  rustfmt = package "rustfmt";
  rust-analyzer = package "rust-analyzer";
  deadnix = package "deadnix";
  nixpkgs-fmt = package "nixpkgs-fmt";
  curl = package "curl";
  jq = package "jq";
}
