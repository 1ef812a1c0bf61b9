# A small YAML writer for the daemon's config file.
#
# nixpkgs' `formats.yaml.generate` converts in a build step, so the text is
# not known while the system is evaluated. Writing it here keeps the text
# visible to evaluation-time tests (which check no secret is in it) and lets
# the build-time `soong-daemon check-config` run on exactly this file.
# Strings are written as JSON strings, which YAML reads as double-quoted
# scalars; lists are written in flow style (`[8000, 8001]`).
let
  inherit (builtins)
    attrNames concatStringsSep filter isAttrs isBool isList isNull map match toJSON;

  key = name: if match "[A-Za-z_][A-Za-z0-9_-]*" name != null then name else toJSON name;

  scalar = value:
    if isBool value then (if value then "true" else "false")
    else if isNull value then "null"
    else if isAttrs value then "{}"
    else toJSON value;

  # Drops nulls (an unset option means "the daemon's default") recursively.
  prune = value:
    if isAttrs value then
      builtins.listToAttrs
        (map (name: { inherit name; value = prune value.${name}; })
          (filter (name: !(isNull value.${name})) (attrNames value)))
    else if isList value then map prune value
    else value;

  block = indent: attrs:
    concatStringsSep "" (map
      (name:
        let value = attrs.${name}; in
        if isAttrs value && value != { } then
          "${indent}${key name}:\n${block "${indent}  " value}"
        else
          "${indent}${key name}: ${scalar value}\n")
      (attrNames attrs));
in
{
  # toYAML :: attrset -> string
  toYAML = attrs: block "" (prune attrs);
}
