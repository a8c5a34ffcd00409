"""The checks every section of the configuration shares (the sections themselves are in
:mod:`gatewayd.config.schema`).

A section is a frozen dataclass deriving from :class:`Section`; its ``__post_init__``
calls these checks, which fail with a :class:`~gatewayd.core.errors.ConfigError`
naming the dotted key (``mqtt.port``), what was expected, and the value found.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn

from gatewayd.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

_SHOW_MAX: Final = 80


def show(value: object) -> str:
    """The offending value as the operator wrote it, cut short if long."""
    text = repr(str(value)) if isinstance(value, PurePath) else repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def is_printable_nonempty(value: str) -> bool:
    return bool(value) and value.isprintable()


def is_name(value: str) -> bool:
    return bool(value) and "/" not in value and value.isprintable()


def is_host(value: str) -> bool:
    return (
        bool(value)
        and value.isprintable()
        and not any(c.isspace() or c == "/" for c in value)
        and value.count(":") != 1
    )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address, written out (a name is not looked up)."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_client_id(value: str) -> bool:
    return len(value) <= 128 and value.isprintable() and " " not in value


def is_topic_prefix(value: str) -> bool:
    return (
        bool(value)
        and not value.startswith("$")
        and not any(c in value for c in "+#\0")
        and all(value.split("/"))
    )


def is_dotted_name(value: str) -> bool:
    parts = value.split(".")
    return len(parts) >= 2 and all(part.isidentifier() for part in parts)


class Section:
    """What every section dataclass shares: typed checks that fail with its dotted key."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    _section: ClassVar[str]

    def _error(self, key: str, message: str) -> NoReturn:
        raise ConfigError(type(self).__name__, f"{self._section}.{key}", message)

    def _fail(self, key: str, expected: str) -> NoReturn:
        self._error(key, f"expected {expected}, got {show(getattr(self, key))}")

    def _set(self, key: str, value: object) -> None:
        object.__setattr__(self, key, value)

    def _int(self, key: str, low: int, high: int, expected: str = "") -> None:
        value = getattr(self, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self._fail(key, expected or f"an integer from {low} to {high}")

    def _float(self, key: str, expected: str, valid: Callable[[float], bool]) -> None:
        value = getattr(self, key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not valid(value)
        ):
            self._fail(key, expected)
        self._set(key, float(value))

    def _str(
        self, key: str, expected: str, valid: Callable[[str], object], *, optional: bool = False
    ) -> None:
        value = getattr(self, key)
        if value is None and optional:
            return
        if not isinstance(value, str) or not valid(value):
            self._fail(key, expected)

    def _choice(self, key: str, choices: Collection[object], expected: str = "") -> None:
        value = getattr(self, key)
        if not any(type(value) is type(c) and value == c for c in choices):
            self._fail(key, expected or "one of " + ", ".join(repr(c) for c in choices))

    def _path(self, key: str, *, optional: bool = False) -> None:
        value = getattr(self, key)
        if value is None and optional:
            return
        if (
            not isinstance(value, str | PurePath)
            or not Path(value).is_absolute()
            or "\0" in str(value)
        ):
            self._fail(key, "an absolute path, as a string")
        self._set(key, Path(value))
