# A stand-in for the parts of nixpkgs' `lib` that soong's flake and NixOS
# module use, so the module can be evaluated on machines without nixpkgs
# (see nix/README.md). Every function here has the name, arguments and
# meaning of its nixpkgs namesake; where nixpkgs does more, the stub does
# less, never something different. A function the module starts using that
# is missing here fails the evaluation test loudly ("attribute missing").
let
  inherit (builtins)
    all any attrNames concatLists concatStringsSep elem elemAt filter foldl'
    head isAttrs isBool isFunction isInt isList isPath isString
    length listToAttrs map match stringLength substring tail toJSON;

  # ---- attrsets, lists, strings ---------------------------------------

  mapAttrs = builtins.mapAttrs;
  filterAttrs = pred: set:
    listToAttrs (map (name: { inherit name; value = set.${name}; })
      (filter (name: pred name set.${name}) (attrNames set)));
  mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: set: listToAttrs (mapAttrsToList f set);
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  attrByPath = path: default: set:
    if path == [ ] then set
    else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
    else default;
  setAttrByPath = path: value:
    if path == [ ] then value else { ${head path} = setAttrByPath (tail path) value; };
  recursiveUpdate = lhs: rhs:
    lhs // mapAttrs
      (name: value:
        if isAttrs value && lhs ? ${name} && isAttrs lhs.${name}
        then recursiveUpdate lhs.${name} value else value)
      rhs;
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: set: if cond then set else { };
  optionalString = cond: s: if cond then s else "";
  concatMap = f: xs: concatLists (map f xs);
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  last = xs: elemAt xs (length xs - 1);
  count = pred: foldl' (c: x: if pred x then c + 1 else c) 0;
  flatten = x: if isList x then concatMap flatten x else [ x ];
  hasPrefix = pref: s: substring 0 (stringLength pref) s == pref;
  hasSuffix = suf: s:
    let
      ls = stringLength s;
      lf = stringLength suf;
    in
    lf <= ls && substring (ls - lf) lf s == suf;
  hasInfix = infix: s: match ".*${escapeRegex infix}.*" s != null;
  removeSuffix = suf: s:
    if hasSuffix suf s then substring 0 (stringLength s - stringLength suf) s else s;
  toInt = s:
    let m = match "[ \t\n]*(-?[0-9]+)[ \t\n]*" s; in
    if m == null then throw "Could not convert ${s} to int." else builtins.fromJSON (head m);
  removePrefix = pref: s:
    if hasPrefix pref s then substring (stringLength pref) (stringLength s) s else s;
  # As nixpkgs: escapes `\[{()^$?*+|.` (not `]` or `}`).
  escapeRegex = builtins.replaceStrings
    [ "\\" "[" "{" "(" ")" "^" "$" "?" "*" "+" "|" "." ]
    [ "\\\\" "\\[" "\\{" "\\(" "\\)" "\\^" "\\$" "\\?" "\\*" "\\+" "\\|" "\\." ];
  splitString = sep: s: filter isString (builtins.split (escapeRegex sep) s);
  escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
  escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
  showOption = concatStringsSep ".";
  isDerivation = x: isAttrs x && x ? type && x.type == "derivation";
  getExe = drv: "${drv}/bin/${drv.meta.mainProgram or drv.pname or drv.name}";
  makeBinPath = paths: concatStringsSep ":" (map (p: "${p}/bin") paths);
  toUpper = builtins.replaceStrings
    (lowerChars)
    (upperChars);
  lowerChars = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  upperChars = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];

  # ---- option declarations and definition properties -----------------

  mkOption = attrs: attrs // { _type = "option"; };
  isOption = x: isAttrs x && x ? _type && x._type == "option";
  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
  };
  mkPackageOption = pkgs: name: { default ? [ name ], example ? null, extraDescription ? "", nullable ? false }:
    let
      path = if isList default then default else [ default ];
      shown = concatStringsSep "." path;
    in
    mkOption
      {
        type = if nullable then types.nullOr types.package else types.package;
        default = attrByPath path (throw "pkgs.${shown} cannot be found in pkgs") pkgs;
        defaultText = literalExpression "pkgs.${shown}";
        description = "The ${name} package to use.${extraDescription}";
      } // optionalAttrs (example != null) { inherit example; };
  literalExpression = text: { _type = "literalExpression"; inherit text; };
  literalMD = text: { _type = "literalMD"; inherit text; };

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  defaultPriority = 100;

  typeOf = v: if isAttrs v && v ? _type then v._type else null;

  # Splits `mkMerge`s and pushes `mkIf`/`mkOverride` into the attributes of
  # an attrset definition, without evaluating any condition (so a module may
  # write `config = mkIf cfg.enable { ... }` and still define `cfg`'s own
  # siblings, as in nixpkgs).
  pushDownProperties = v:
    let t = typeOf v; in
    if t == "merge" then concatMap pushDownProperties v.contents
    else if t == "if" then
      map (mapAttrs (_: mkIf v.condition)) (pushDownProperties v.content)
    else if t == "override" then
      map (mapAttrs (_: mkOverride v.priority)) (pushDownProperties v.content)
    else [ v ];

  # One definition value -> the values it stands for, conditions evaluated.
  # As in nixpkgs, an `mkOverride` is left in place (its content unforced)
  # for mergeDefinitions to sort by priority.
  dischargeProperties = v:
    let t = typeOf v; in
    if t == "merge" then concatMap dischargeProperties v.contents
    else if t == "if" then
      (if !isBool v.condition
      then throw "mkIf called with a non-Boolean condition"
      else if v.condition then dischargeProperties v.content else [ ])
    else [ v ];

  # defs: [ { file; value; } ] (raw) -> { isDefined; value; defsFinal; }
  mergeDefinitions = loc: type: defs:
    let
      discharged = concatMap
        (d: map
          (v:
            if typeOf v == "override"
            then { inherit (d) file; value = v.content; inherit (v) priority; }
            else { inherit (d) file; value = v; priority = defaultPriority; })
          (dischargeProperties d.value))
        defs;
      best = foldl' (m: d: if d.priority < m then d.priority else m) 9999 discharged;
      defsFinal = map (d: { inherit (d) file value; }) (filter (d: d.priority == best) discharged);
      bad = filter (d: !type.check d.value) defsFinal;
      checked =
        if bad != [ ] then
          throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition values: in `${(head bad).file}'"
        else defsFinal;
    in
    {
      isDefined = defsFinal != [ ];
      inherit defsFinal;
      value = type.merge loc checked;
    };

  # ---- types ------------------------------------------------------------

  mkOptionType =
    { name
    , description ? name
    , check ? (_: true)
    , merge ? mergeDefaultOption
    , getSubOptions ? (_: { })
    , nestedTypes ? { }
    , ...
    }@attrs: attrs // {
      _type = "option-type";
      inherit name description check merge getSubOptions nestedTypes;
    };
  isType = name: x: isAttrs x && x ? _type && x._type == "option-type" && x.name == name;

  mergeEqualOption = loc: defs:
    if defs == [ ] then throw "option `${showOption loc}' has no definitions"
    else
      foldl'
        (v: d:
          if d.value == v then v
          else throw "The option `${showOption loc}' has conflicting definition values (in `${d.file}').")
        (head defs).value
        (tail defs);
  mergeOneOption = loc: defs:
    if defs == [ ] then throw "option `${showOption loc}' has no definitions"
    else if length defs == 1 then (head defs).value
    else mergeEqualOption loc defs;
  mergeDefaultOption = loc: defs:
    let values = map (d: d.value) defs; in
    if defs == [ ] then throw "option `${showOption loc}' has no definitions"
    else if length values == 1 then head values
    else if all isList values then concatLists values
    else if all isAttrs values then foldl' (a: b: a // b) { } values
    else if all isBool values then any (x: x) values
    else if all isString values then concatStringsSep "" values
    else throw "Cannot merge definitions of `${showOption loc}'.";

  # Merges [ {file; value;} ] of attrsets attribute by attribute.
  mergeAttrsOf = elemType: loc: defs:
    let
      pushed = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDownProperties d.value)) defs;
      names = unique (concatMap (d: attrNames d.value) pushed);
      merged = map
        (name: {
          inherit name;
          r = mergeDefinitions (loc ++ [ name ]) elemType
            (concatMap (d: optional (d.value ? ${name}) { inherit (d) file; value = d.value.${name}; }) pushed);
        })
        names;
    in
    listToAttrs (map (m: { inherit (m) name; value = m.r.value; }) (filter (m: m.r.isDefined) merged));

  types = rec {
    raw = mkOptionType { name = "raw"; check = _: true; merge = mergeOneOption; };
    anything = mkOptionType {
      name = "anything";
      description = "anything";
      check = _: true;
      merge = loc: defs:
        let values = map (d: d.value) defs; in
        if all isAttrs values && !(any isDerivation values) then mergeAttrsOf anything loc defs
        else if all isList values && length (unique values) > 1 then
          throw "The option `${showOption loc}' has conflicting list definitions."
        else if all isFunction values then (head values)
        else mergeEqualOption loc defs;
    };
    unspecified = mkOptionType { name = "unspecified"; };
    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      check = isAttrs;
      merge = _: defs: foldl' (a: d: a // d.value) { } defs;
    };
    bool = mkOptionType { name = "bool"; description = "boolean"; check = isBool; merge = mergeEqualOption; };
    int = mkOptionType { name = "int"; description = "signed integer"; check = isInt; merge = mergeEqualOption; };
    float = mkOptionType { name = "float"; description = "floating point number"; check = builtins.isFloat; merge = mergeEqualOption; };
    number = either int float;
    ints = {
      between = lo: hi: addCheck int (x: x >= lo && x <= hi) // {
        description = "integer between ${toString lo} and ${toString hi} (both inclusive)";
      };
      unsigned = addCheck int (x: x >= 0) // { description = "unsigned integer, meaning >=0"; };
      positive = addCheck int (x: x > 0) // { description = "positive integer, meaning >0"; };
      u16 = ints.between 0 65535 // { description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)"; };
    };
    port = ints.u16;
    str = mkOptionType { name = "str"; description = "string"; check = isString; merge = mergeEqualOption; };
    nonEmptyStr = addCheck str (s: match "[ \t\n]*" s == null) // { name = "nonEmptyStr"; description = "non-empty string"; };
    singleLineStr = addCheck str (s: match "[^\n]*\n?" s != null) // { name = "singleLineStr"; description = "(optionally newline-terminated) single-line string"; };
    strMatching = pattern: addCheck str (s: match pattern s != null) // {
      name = "strMatching ${toJSON pattern}";
      description = "string matching the pattern ${pattern}";
    };
    lines = mkOptionType {
      name = "lines";
      description = "strings concatenated with \"\\n\"";
      check = isString;
      merge = _: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    enum = values: mkOptionType {
      name = "enum";
      description = "one of ${concatStringsSep ", " (map toJSON values)}";
      check = x: elem x values;
      merge = mergeEqualOption;
    };
    path = mkOptionType {
      name = "path";
      description = "absolute path";
      check = x: (isString x || isPath x || (isAttrs x && x ? outPath)) && substring 0 1 (toString x) == "/";
      merge = mergeEqualOption;
    };
    package = mkOptionType {
      name = "package";
      description = "package";
      check = x: isDerivation x || (isString x && hasPrefix builtins.storeDir x);
      merge = mergeOneOption;
    };
    nullOr = elemType: mkOptionType {
      name = "nullOr";
      description = "null or ${elemType.description}";
      check = x: x == null || elemType.check x;
      merge = loc: defs:
        let nulls = filter (d: d.value == null) defs; in
        if nulls == defs then null
        else if nulls != [ ] then throw "The option `${showOption loc}' is defined both null and not null."
        else elemType.merge loc defs;
      nestedTypes.elemType = elemType;
    };
    listOf = elemType: mkOptionType {
      name = "listOf";
      description = "list of ${elemType.description}";
      check = isList;
      merge = loc: defs:
        concatLists (map
          (d: map (x: (mergeDefinitions (loc ++ [ "[]" ]) elemType [{ inherit (d) file; value = x; }]).value) d.value)
          defs);
      nestedTypes.elemType = elemType;
    };
    attrsOf = elemType: mkOptionType {
      name = "attrsOf";
      description = "attribute set of ${elemType.description}";
      check = isAttrs;
      merge = mergeAttrsOf elemType;
      nestedTypes.elemType = elemType;
    };
    lazyAttrsOf = attrsOf;
    either = t1: t2: mkOptionType {
      name = "either";
      description = "${t1.description} or ${t2.description}";
      check = x: t1.check x || t2.check x;
      merge = loc: defs:
        let values = map (d: d.value) defs; in
        if all t1.check values then t1.merge loc defs
        else if all t2.check values then t2.merge loc defs
        else mergeOneOption loc defs;
    };
    oneOf = ts: foldl' either (head ts) (tail ts);
    addCheck = t: extra: t // { check = x: t.check x && extra x; };
    submoduleWith = { modules, specialArgs ? { }, ... }: mkOptionType {
      name = "submodule";
      description = "submodule";
      check = x: isAttrs x || isFunction x || isPath x;
      merge = loc: defs:
        (evalModules {
          inherit specialArgs;
          prefix = loc;
          modules = modules ++ map (d: { _file = d.file; config = d.value; }) defs;
        }).config;
    };
    submodule = m: submoduleWith { modules = if isList m then m else [ m ]; };
  };

  # ---- the module system --------------------------------------------------

  # Flattens `imports` and calls module functions with the module arguments.
  collectModules = args: file: m:
    let
      loaded = if isPath m || isString m then import m else m;
      name = if isPath m || isString m then toString m else file;
      called = if isFunction loaded then loaded args else loaded;
      structured = called ? options || called ? config;
      theFile = called._file or name;
      known = [ "_file" "key" "imports" "options" "config" "freeformType" "meta" "disabledModules" ];
      extra = filter (n: !(elem n known)) (attrNames called);
      module =
        if structured then
          (if extra != [ ] then
            throw "Module `${theFile}' has an unsupported attribute `${head extra}'."
          else {
            file = theFile;
            options = called.options or { };
            config = called.config or { };
            freeformType = called.freeformType or null;
          })
        else {
          file = theFile;
          options = { };
          config = removeAttrs called [ "_file" "key" "imports" "meta" "freeformType" ];
          freeformType = called.freeformType or null;
        };
    in
    [ module ] ++ concatMap (collectModules args theFile) (called.imports or [ ]);

  # Option declarations of all modules, merged into one tree.
  mergeOptionDecls = loc: decls:
    let
      opts = filter isOption decls;
      names = unique (concatMap attrNames decls);
    in
    if opts != [ ] then
      (if length decls > 1
      then throw "The option `${showOption loc}' is declared more than once."
      else head opts // { inherit loc; })
    else genAttrs names (n: mergeOptionDecls (loc ++ [ n ]) (concatMap (d: optional (d ? ${n}) d.${n}) decls));

  # The value of the config tree below `opts`, from definitions `defs`
  # ([ { file; value; } ] of attrsets at this level).
  evalConfigTree = loc: opts: defs: freeformType:
    let
      pushed = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDownProperties d.value)) defs;
      defined = unique (concatMap (d: attrNames d.value) pushed);
      undeclared = filter (n: !(opts ? ${n})) defined;
      defsOf = n: concatMap (d: optional (d.value ? ${n}) { inherit (d) file; value = d.value.${n}; }) pushed;
      declared = mapAttrs
        (n: o:
          if isOption o then evalOptionValue (loc ++ [ n ]) o (defsOf n)
          else evalConfigTree (loc ++ [ n ]) o (defsOf n) null)
        opts;
      freeform =
        if undeclared == [ ] then { }
        else if freeformType == null then
          throw "The option `${showOption (loc ++ [ (head undeclared) ])}' does not exist. Definition in `${(head (defsOf (head undeclared))).file}'."
        else
          freeformType.merge loc (map
            (d: { inherit (d) file; value = filterAttrs (n: _: elem n undeclared) d.value; })
            pushed);
    in
    freeform // declared;

  evalOptionValue = loc: opt: defs:
    let
      type = opt.type or types.unspecified;
      withDefault = optional (opt ? default) { file = "default"; value = mkOptionDefault opt.default; } ++ defs;
      r = mergeDefinitions loc type withDefault;
      value =
        if r.isDefined then r.value
        else throw "The option `${showOption loc}' was accessed but has no value defined. Try setting the option.";
      applied = if opt ? apply then opt.apply value else value;
    in
    if (opt.readOnly or false) && length r.defsFinal > 1
    then throw "The option `${showOption loc}' is read-only, but it's set multiple times."
    else applied;

  evalModules = { modules, specialArgs ? { }, prefix ? [ ], ... }:
    let
      args = specialArgs // { inherit lib config options; };
      collected = concatMap (collectModules args "<unknown-file>") modules;
      options = mergeOptionDecls prefix (map (m: m.options) collected);
      freeformTypes = filter (t: t != null) (map (m: m.freeformType) collected);
      config = evalConfigTree prefix options
        (map (m: { inherit (m) file; value = m.config; }) collected)
        (if freeformTypes == [ ] then null else head freeformTypes);
    in
    { inherit config options; _type = "configuration"; };

  lib = {
    inherit
      mapAttrs filterAttrs mapAttrsToList nameValuePair mapAttrs' genAttrs attrByPath setAttrByPath
      recursiveUpdate optional optionals optionalAttrs optionalString concatMap unique last count
      flatten hasPrefix hasSuffix hasInfix removePrefix removeSuffix toInt splitString escapeShellArg escapeShellArgs
      showOption isDerivation getExe makeBinPath toUpper
      mkOption isOption mkEnableOption mkPackageOption literalExpression literalMD
      mkIf mkMerge mkOverride mkOptionDefault mkDefault mkForce
      mkOptionType isType mergeEqualOption mergeOneOption mergeDefaultOption types evalModules;
    inherit (builtins)
      all any attrNames attrValues concatLists concatStringsSep elem elemAt filter foldl' genList head
      isAttrs isBool isFunction isInt isList isPath isString length listToAttrs map match
      stringLength substring tail toJSON fromJSON replaceStrings;
    strings = { inherit hasPrefix hasSuffix hasInfix removePrefix splitString escapeShellArg escapeShellArgs toUpper; };
    attrsets = { inherit mapAttrs filterAttrs mapAttrsToList nameValuePair genAttrs attrByPath setAttrByPath recursiveUpdate; };
    lists = { inherit optional optionals unique last count flatten; };
    trivial = { };
    licenses = {
      mit = { spdxId = "MIT"; };
      asl20 = { spdxId = "Apache-2.0"; };
    };
    systems.flakeExposed = [ "x86_64-linux" "aarch64-linux" ];
    # Marks this lib as the stub, so a test can tell which lib it ran with.
    soongStub = true;
  };
in
lib
