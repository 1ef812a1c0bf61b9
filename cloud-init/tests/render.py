#!/usr/bin/env python3
"""Renders cloud-init/user-data.yaml.tmpl the way the CLI must: every
{{name}} replaced verbatim by its value, each value checked against its
pattern in cloud-init/variables.json, no unknown or missing name.

    render.py VALUES.json > user-data

VALUES.json maps each variable name to its value (a string). The CLI's
renderer is the contract's other implementation; this one is the tests'.
"""
import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{\{([a-z0-9_]+)\}\}")


def load_variables():
    spec = json.loads((HERE / "variables.json").read_text())
    return {v["name"]: v for v in spec["variables"]}


def render(values, template=None):
    variables = load_variables()
    template = template if template is not None else (HERE / "user-data.yaml.tmpl").read_text()
    used = set(PLACEHOLDER.findall(template))
    problems = []
    for name in sorted(used - set(variables)):
        problems.append(f"the template uses `{name}`, which variables.json does not define")
    for name in sorted(set(variables) - set(values)):
        problems.append(f"no value for `{name}`")
    for name in sorted(set(values) - set(variables)):
        problems.append(f"unknown variable `{name}`")
    for name, value in values.items():
        spec = variables.get(name)
        if spec and not re.fullmatch(spec["pattern"], value):
            shown = "(secret)" if spec["secret"] else repr(value)
            problems.append(f"`{name}` = {shown} does not match {spec['pattern']}")
    if problems:
        raise ValueError("; ".join(problems))
    out = PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    if "{{" in out or "}}" in out:
        raise ValueError("the rendered user-data still contains `{{` or `}}`")
    return out


def main():
    values = json.loads(pathlib.Path(sys.argv[1]).read_text())
    try:
        sys.stdout.write(render(values))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
