"""The device states and the devices file: ``[[pair]]`` and ``[[device]]`` tables in TOML."""

from __future__ import annotations

import enum
import tomllib
from pathlib import Path

from gatewayd.core.errors import ConfigError


class State(enum.StrEnum):
    PENDING = "pending"
    ACTIVATED = "activated"
    EXPIRED = "expired"


def parse_device(table: object, source: str, where: str = "") -> tuple[str, str, str, State]:
    """Check one ``{vendor, model, sn[, state]}`` table; raises :class:`ConfigError`."""
    fields = _parse_table(table, source, where, ("vendor", "model", "sn", "state"))
    state = fields.get("state", State.PENDING.value)
    if state not in set(State):
        expected = "expected one of " + ", ".join(State)
        raise ConfigError(source, _key(where, "state"), expected)
    return fields["vendor"], fields["model"], fields["sn"], State(state)


def read_devices_file(
    path: Path,
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, State]]]:
    """The ``[[pair]]`` and ``[[device]]`` entries of a devices file.

    Raises :class:`ConfigError` naming the file, the entry and the key.
    """
    source = str(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from exc
    for name in document:
        if name not in {"device", "pair"}:
            raise ConfigError(source, name, "unknown key; expected [[device]] or [[pair]] tables")
    pairs = [
        _parse_table(table, source, f"pair #{index}", ("vendor", "model"))
        for index, table in enumerate(_tables(document, "pair", source), start=1)
    ]
    devices = [
        parse_device(table, source, f"device #{index}")
        for index, table in enumerate(_tables(document, "device", source), start=1)
    ]
    return [(pair["vendor"], pair["model"]) for pair in pairs], devices


def _tables(document: dict[str, object], name: str, source: str) -> list[object]:
    tables = document.get(name, [])
    if not isinstance(tables, list):
        raise ConfigError(source, name, f"expected [[{name}]] tables")
    return tables


def _parse_table(table: object, source: str, where: str, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(source, where, "expected a table")
    for key in table:
        if key not in keys:
            raise ConfigError(source, _key(where, key), "unknown key")
    fields: dict[str, str] = {}
    for key in keys:
        value = table.get(key)
        if value is None and key == "state":
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(source, _key(where, key), "expected a non-empty string")
        fields[key] = value
    return fields


def _key(where: str, key: str) -> str:
    return f"{where}, key {key}" if where else key
