"""A configuration written as TOML, for the tests and the benchmarks (bench/support.py):
``{"section": {"key": value}}`` to text.

Values are strings, booleans, numbers, lists and inline tables of those; the
standard library reads TOML (tomllib) but does not write it.
"""

from __future__ import annotations


def dumps(config: dict[str, dict[str, object]]) -> str:
    """The TOML text of ``config``, one table per section, in order."""
    out = []
    for name, values in config.items():
        out.append(f"[{name}]")
        out += [f"{key} = {_value(v)}" for key, v in values.items()]
    return "\n".join(out) + "\n"


def _value(v: object) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
