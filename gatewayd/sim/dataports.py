"""The values a simulated device keeps through the HTTP Data API, and the forms that
write, read and record them.

A device holds the values written to each of its aliases, each with its Unix
timestamp (whole seconds); a read answers each alias's latest. What it keeps is
bounded: at most :data:`MAX_ALIASES` aliases a device, :data:`MAX_POINTS` values
an alias (the oldest go first), :data:`MAX_VALUE_BYTES` a value. Nothing here
does I/O or locks: :class:`~gatewayd.sim.registry.Registry` holds its lock
around every call to :class:`Dataports`.

The forms, as Exosite documents them (all ``application/x-www-form-urlencoded``,
names and values percent-encoded):

- write: ``<alias>=<value>&...``, every value at the time of the request;
- read: the query ``<alias>&<alias>...``; the answer ``<alias>=<value>&...``
  names the aliases that have a value, in the order asked;
- record: ``alias=<alias>&<timestamp>=<value>&<timestamp>=<value>&alias=...``,
  each value at its own timestamp. Two timestamps of one alias less than a second
  apart are a conflict: nothing is recorded and the answer (409) names each such
  alias with its timestamp.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode

MAX_ALIASES: Final = 32
"""Aliases one device may hold values for."""
MAX_POINTS: Final = 16
"""Values kept per alias: the newest by timestamp."""
MAX_VALUE_BYTES: Final = 4096
"""Bytes of one value (UTF-8)."""
MAX_ALIAS_CHARS: Final = 128
MAX_TIMESTAMP_DIGITS: Final = 12

Key = tuple[str, str, str]
"""(vendor, model, sn)."""
Point = tuple[int, str]
"""(timestamp, value)."""


class DataError(ValueError):
    """A data request refused with ``status`` (400: malformed; 413: more than a device keeps)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DataRequest:
    """What one request asks: values to write now, values to record, aliases to read after."""

    writes: tuple[tuple[str, str], ...] = ()
    points: tuple[tuple[str, int, str], ...] = ()
    reads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DataResult:
    """The answer: 204 with no pairs; 200 with the values read; 409 with the conflicts;
    413 when a write would take the device past :data:`MAX_ALIASES`."""

    status: int
    pairs: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        return urlencode(self.pairs).encode()


@dataclass(slots=True)
class Dataports:
    _values: dict[Key, dict[str, list[Point]]] = field(default_factory=dict)

    def apply(self, key: Key, request: DataRequest, now: int) -> DataResult:
        """Write and record what ``request`` asks (all of it or, refused, none), then read."""
        points = [(alias, now, value) for alias, value in request.writes]
        points += request.points
        conflicts = _conflicts(request.points)
        if conflicts:
            return DataResult(409, conflicts)
        held = self._values.get(key, {})
        if len(held.keys() | {alias for alias, _time, _value in points}) > MAX_ALIASES:
            return DataResult(413)
        if points:
            held = self._values.setdefault(key, held)
        for alias, time, value in points:
            _keep(held.setdefault(alias, []), time, value)
        pairs = tuple(
            (alias, held[alias][-1][1]) for alias in dict.fromkeys(request.reads) if alias in held
        )
        return DataResult(200 if pairs else 204, pairs)

    def points(self, key: Key, alias: str) -> list[Point]:
        """The values ``alias`` of the device holds, oldest first."""
        return list(self._values.get(key, {}).get(alias, []))

    def clear(self, key: Key) -> None:
        self._values.pop(key, None)


def parse_write(body: bytes, query: str) -> DataRequest:
    """A write (``body``), and the read that follows it if ``query`` names aliases."""
    writes = tuple(_form(body))
    reads = parse_read(query).reads
    if not writes and not reads:
        raise DataError(400, "expected <alias>=<value> pairs")
    for alias, value in writes:
        _check(alias, value)
    return DataRequest(writes=writes, reads=reads)


def parse_read(query: str) -> DataRequest:
    """A read of the aliases ``query`` names (``<alias>&<alias>...``)."""
    try:
        fields = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise DataError(400, "the query is not <alias>&<alias>...") from None
    if any(value for _alias, value in fields):
        raise DataError(400, "a read names aliases only: <alias>&<alias>...")
    for alias, _value in fields:
        _check(alias, "")
    return DataRequest(reads=tuple(alias for alias, _value in fields))


def parse_record(body: bytes) -> DataRequest:
    """A record: ``alias=<alias>&<timestamp>=<value>&...``."""
    points: list[tuple[str, int, str]] = []
    alias: str | None = None
    for name, value in _form(body):
        if name == "alias":
            _check(value, "")
            alias = value
            continue
        if alias is None:
            raise DataError(400, "a record starts with alias=<alias>")
        if not (name.isascii() and name.isdigit() and len(name) <= MAX_TIMESTAMP_DIGITS):
            raise DataError(400, "expected <timestamp>=<value>: a timestamp is whole seconds")
        _check(alias, value)
        points.append((alias, int(name), value))
    if not points:
        raise DataError(400, "expected alias=<alias>&<timestamp>=<value>...")
    return DataRequest(points=tuple(points))


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode()
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise DataError(400, "the body is not an application/x-www-form-urlencoded form") from None


def _check(alias: str, value: str) -> None:
    if not alias or len(alias) > MAX_ALIAS_CHARS:
        raise DataError(400, f"an alias is 1 to {MAX_ALIAS_CHARS} characters")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise DataError(413, f"a value is at most {MAX_VALUE_BYTES} bytes")


def _conflicts(points: tuple[tuple[str, int, str], ...]) -> tuple[tuple[str, str], ...]:
    """Each alias recorded twice within a second, with the timestamp seen twice."""
    seen: set[tuple[str, int]] = set()
    found: dict[str, str] = {}
    for alias, time, _value in points:
        if (alias, time) in seen:
            found.setdefault(alias, str(time))
        seen.add((alias, time))
    return tuple(found.items())


def _keep(held: list[Point], time: int, value: str) -> None:
    """Put (time, value) in ``held`` (sorted by time), replacing a value at the same second."""
    times = [point[0] for point in held]
    index = bisect.bisect_left(times, time)
    if index < len(held) and held[index][0] == time:
        held[index] = (time, value)
    else:
        held.insert(index, (time, value))
    del held[:-MAX_POINTS]
