{
  # A stand-in for nixpkgs, for evaluating soong's flake where nixpkgs cannot
  # be downloaded:
  #   nix eval .#... --override-input nixpkgs path:./nix/stub-nixpkgs
  # It has no inputs, so it needs no network. See nix/README.md.
  description = "soong's stub of the nixpkgs lib and builders its flake uses (tests only)";

  outputs = _:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
        (system: import ./pkgs.nix { inherit lib system; });
    };
}
