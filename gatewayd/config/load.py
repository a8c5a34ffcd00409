"""The configuration file: one TOML file, parsed once into frozen dataclasses.

:func:`parse` maps the TOML document onto the sections of
:mod:`gatewayd.config.schema`, which check their own values, and rejects what
they do not know. Every problem is a :class:`~gatewayd.core.errors.ConfigError`
that names the file, the dotted key (``mqtt.port``) and what was expected, and
shows the value found.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Final, TypeVar

from gatewayd.config.schema import (
    SECTIONS,
    Config,
    ExositeConfig,
    GatewayConfig,
    KeyringConfig,
    MqttConfig,
    NodesConfig,
)
from gatewayd.config.validation import Section, show
from gatewayd.core.errors import ConfigError

DEFAULT_PATH: Final = Path("/etc/gatewayd/config.toml")

_S = TypeVar("_S", bound=Section)


def _keys(cls: type[Section]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown(name: str, section: str | None, value: object) -> str:
    """What to say about an unknown ``name`` in ``section`` (None: the top level)."""
    import difflib  # noqa: PLC0415 (only for a mistake: a running gatewayd needs it not)

    if section is None and isinstance(value, dict):
        close = difflib.get_close_matches(name, list(SECTIONS), n=1)
        if close:
            return f"unknown section; did you mean [{close[0]}]?"
        return "unknown section; known sections: " + ", ".join(f"[{s}]" for s in SECTIONS)
    if (section, name) == ("mqtt", "password"):
        return (
            "not allowed: the password is never written in this file; put it in a file "
            "named by mqtt.password_file, or in the systemd credential gatewayd-mqtt-password"
        )
    what = "unknown key" if section else "unknown key outside any section"
    here = _keys(SECTIONS[section]) if section else []
    close = difflib.get_close_matches(name, here, n=1)
    if close:
        return f"{what}; did you mean {section}.{close[0]}?"
    elsewhere = [s for s, cls in SECTIONS.items() if s != section and name in _keys(cls)]
    if elsewhere:
        return f"{what}; did you mean {elsewhere[0]}.{name}, under [{elsewhere[0]}]?"
    if section:
        return f"{what}; [{section}] knows: " + ", ".join(here)
    return what + "; every key belongs under a section such as [gateway]"


def _build(cls: type[_S], document: dict[str, Any], source: str) -> _S:
    section = cls._section
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(source, section, f"expected a table, [{section}], got {show(table)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(source, f"{section}.{key}", _unknown(key, section, table[key]))
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in table:
            if section not in document:
                raise ConfigError(source, section, f"missing; [{section}] is a required section")
            raise ConfigError(source, f"{section}.{name}", "missing; this key is required")
    return cls(**table)


def parse(text: str, source: str = "<string>") -> Config:
    """Parse the TOML ``text``; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from exc
    for name, value in document.items():
        if name not in SECTIONS:
            raise ConfigError(source, name, _unknown(name, None, value))
    try:
        return Config(
            source=source,
            gateway=_build(GatewayConfig, document, source),
            mqtt=_build(MqttConfig, document, source),
            exosite=_build(ExositeConfig, document, source),
            keyring=_build(KeyringConfig, document, source),
            nodes=_build(NodesConfig, document, source),
        )
    except ConfigError as exc:
        raise ConfigError(source, exc.key, exc.expected) from None


def load(path: Path) -> Config:
    """Read and parse the file at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), "", f"not UTF-8 text (line {line})") from exc
    return parse(text, str(path))
