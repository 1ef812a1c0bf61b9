# The nixpkgs behaviours the module and its tests rely on, checked against
# the stub, so an edit to the stub cannot quietly change what the module
# evaluation means. Each case is something nixpkgs' lib does; the list is
# what `nix-instantiate --eval --strict tests.nix` returns when one breaks.
#
#   nix-instantiate --eval --strict --json nix/stub-nixpkgs/tests.nix   # => []
let
  lib = import ./lib.nix;
  inherit (lib) mkOption types mkIf mkMerge mkDefault mkForce;

  eval = modules: (lib.evalModules { inherit modules; }).config;
  throws = value: !(builtins.tryEval (builtins.deepSeq value value)).success;

  opt = type: default: mkOption { inherit type default; };
  decl = {
    options = {
      n = opt types.int 1;
      s = opt types.str "default";
      l = opt (types.listOf types.int) [ ];
      a = opt (types.attrsOf types.str) { };
      o = opt (types.nullOr types.str) null;
      e = lib.mkEnableOption "e";
      f = mkOption {
        type = types.submodule { freeformType = types.attrsOf types.anything; options.known = opt types.int 7; };
        default = { };
      };
    };
  };
  with' = defs: eval ([ decl ] ++ defs);

  cases = {
    "an option's default applies" = (with' [ ]).n == 1;
    "a definition beats the default" = (with' [{ n = 2; }]).n == 2;
    "a definition beats mkDefault" = (with' [{ n = mkDefault 3; } { n = 4; }]).n == 4;
    "mkForce beats a definition" = (with' [{ n = mkForce 5; } { n = 6; }]).n == 5;
    "equal definitions merge" = (with' [{ s = "x"; } { s = "x"; }]).s == "x";
    "conflicting definitions throw" = throws (with' [{ s = "x"; } { s = "y"; }]).s;
    "a value of the wrong type throws" = throws (with' [{ n = "one"; }]).n;
    "lists concatenate" = (with' [{ l = [ 1 ]; } { l = [ 2 ]; }]).l == [ 1 2 ];
    "attrsOf merges by name" = (with' [{ a.x = "1"; } { a.y = "2"; }]).a == { x = "1"; y = "2"; };
    "mkIf false defines nothing" = (with' [{ n = mkIf false 9; }]).n == 1;
    "mkIf false inside attrsOf drops the name" = (with' [{ a.x = mkIf false "1"; a.y = "2"; }]).a == { y = "2"; };
    "mkMerge merges" = (with' [{ a = mkMerge [{ x = "1"; } { y = "2"; }]; }]).a == { x = "1"; y = "2"; };
    "nullOr keeps null" = (with' [ ]).o == null;
    "an undeclared option throws" = throws (with' [{ nope = 1; }]).nope;
    "a freeform submodule keeps undeclared keys" = (with' [{ f.extra.deep = 1; }]).f == { known = 7; extra.deep = 1; };
    "freeform values merge by priority" = (with' [{ f.k = mkDefault "d"; } { f.k = "v"; }]).f.k == "v";
    "a submodule's config has no _module" = !((with' [ ]).f ? _module);
    # The classic: a module that defines its own options' siblings under
    # `mkIf cfg.enable` must not recurse forever.
    "mkIf on config reads options the same config defines" =
      (eval [
        decl
        ({ config, ... }: { config = mkIf config.e { n = 10; }; })
        { e = true; }
      ]).n == 10;
    "imports are followed" = (eval [{ imports = [ decl ]; n = 11; }]).n == 11;
    "strMatching matches the whole string" =
      types.strMatching "[0-9]+s" ? check
      && (types.strMatching "[0-9]+s").check "90s"
      && !((types.strMatching "[0-9]+s").check "90s ");
    "hasInfix takes brackets literally" = lib.hasInfix "[8000]" "ports: [8000]";
    "toInt parses" = lib.toInt "42" == 42;
  };
in
builtins.filter (name: !cases.${name}) (builtins.attrNames cases)
