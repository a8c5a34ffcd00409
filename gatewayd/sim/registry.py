"""The simulator's model of Exosite: devices, their states, and the faults to inject.

The HTTP server answers each request on its own thread, so every read and
write here goes through one lock. Only :meth:`Registry.load` does I/O.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import secrets
import threading
import time
import tomllib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gatewayd.errors import ConfigError
from gatewayd.secret import Secret

log = logging.getLogger(__name__)

EXPIRY_SECONDS: Final = 24 * 60 * 60
"""A device still pending this long after it was added has expired."""

DROP: Final = 0
"""A scripted status that closes the connection without answering."""


class State(enum.StrEnum):
    PENDING = "pending"
    ACTIVATED = "activated"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Device:
    vendor: str
    model: str
    sn: str
    state: State
    calls: int


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One activation request: when it came (by the registry's clock), for whom, the answer."""

    time: float
    sn: str
    status: int


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer one activation request: ``status`` :data:`DROP` closes without answering."""

    status: int
    cik: Secret | None = None
    delay: float = 0.0


@dataclass(slots=True)
class _Record:
    state: State
    added_at: float


class Registry:
    """Devices keyed by (vendor, model, sn), the CIKs issued to them, and the faults to inject.

    Serials are case-sensitive. A vendor/model pair is known once it has been
    registered, with :meth:`add_pair` or by adding a device to it. Faults are
    applied in this order: the serial's script, then the drop rate, then the
    error rate; latency (global plus per serial) delays every answer.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (faults, not secrets)
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str], None] = {}
        self._devices: dict[tuple[str, str, str], _Record] = {}
        self._issued: list[tuple[str, str]] = []
        self._calls: Counter[str] = Counter()
        self._log: list[LogEntry] = []
        self._latency = 0.0
        self._sn_latency: dict[str, float] = {}
        self._scripts: dict[str, deque[int]] = {}
        self._error_rate = 0.0
        self._drop_rate = 0.0

    def add_pair(self, vendor: str, model: str) -> None:
        _check_names(vendor=vendor, model=model)
        with self._lock:
            self._pairs[vendor, model] = None

    def add(self, vendor: str, model: str, sn: str, state: State | str = State.PENDING) -> Device:
        """Add a device, or re-add it: its state starts over and its 24 h window with it."""
        _check_names(vendor=vendor, model=model, sn=sn)
        state = State(state)
        with self._lock:
            self._pairs[vendor, model] = None
            record = _Record(state, self._clock())
            self._devices[vendor, model, sn] = record
            device = self._view(vendor, model, sn, record)
        log.debug("added %s/%s sn=%s as %s", vendor, model, sn, device.state)
        return device

    def load(self, path: str | Path) -> None:
        """Add the pairs and devices of a TOML file; nothing is added if the file is invalid."""
        pairs, devices = read_devices_file(Path(path))
        for vendor, model in pairs:
            self.add_pair(vendor, model)
        for vendor, model, sn, state in devices:
            self.add(vendor, model, sn, state)

    def pairs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._pairs)

    def devices(self) -> list[Device]:
        with self._lock:
            return [self._view(*key, record) for key, record in self._devices.items()]

    def device(self, vendor: str, model: str, sn: str) -> Device:
        """The device's current view; raises :class:`KeyError` if it was never added."""
        with self._lock:
            return self._view(vendor, model, sn, self._devices[vendor, model, sn])

    def issued(self) -> list[tuple[str, str]]:
        """Every (sn, CIK) this registry handed out, in order."""
        with self._lock:
            return list(self._issued)

    def calls(self, sn: str) -> int:
        with self._lock:
            return self._calls[sn]

    def total_calls(self) -> int:
        with self._lock:
            return self._calls.total()

    def request_log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        seconds = _check_range(seconds, "latency")
        with self._lock:
            self._latency = seconds

    def set_latency(self, sn: str, seconds: float) -> None:
        """Delay the answers for ``sn`` by ``seconds`` on top of the global latency (0 clears)."""
        seconds = _check_range(seconds, "latency")
        with self._lock:
            if seconds:
                self._sn_latency[sn] = seconds
            else:
                self._sn_latency.pop(sn, None)

    @property
    def error_rate(self) -> float:
        with self._lock:
            return self._error_rate

    @error_rate.setter
    def error_rate(self, rate: float) -> None:
        rate = _check_range(rate, "error_rate", 1)
        with self._lock:
            self._error_rate = rate

    @property
    def drop_rate(self) -> float:
        with self._lock:
            return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, rate: float) -> None:
        rate = _check_range(rate, "drop_rate", 1)
        with self._lock:
            self._drop_rate = rate

    def script(self, sn: str, statuses: Iterable[int]) -> None:
        """Answer the next requests for ``sn`` with these statuses, replacing any earlier script.

        200 means "behave normally", :data:`DROP` closes the connection without
        answering, any other status is answered as it is. An empty list clears.
        """
        queue = deque(statuses)
        for status in queue:
            if status != DROP and not 100 <= status <= 599:
                raise ValueError(f"scripted status {status} is not an HTTP status or DROP")
        with self._lock:
            if queue:
                self._scripts[sn] = queue
            else:
                self._scripts.pop(sn, None)

    def activate(self, pair: tuple[str, str] | None, sn: str, *, murano: bool = False) -> Answer:
        """Count, answer and log one activation request.

        With ``murano``, an unknown pair (or None, no Murano product) answers 404
        (not whitelisted) rather than 403.
        """
        with self._lock:
            self._calls[sn] += 1
            delay = self._latency + self._sn_latency.get(sn, 0.0)
            status = self._fault(sn)
            cik = None
            if status == 200:
                status, cik = self._activate(pair, sn, murano=murano)
            self._log.append(LogEntry(self._clock(), sn, status))
        return Answer(status, cik, delay)

    def record(self, sn: str, status: int) -> None:
        """Count and log a request the server answered by itself (a malformed one)."""
        with self._lock:
            self._calls[sn] += 1
            self._log.append(LogEntry(self._clock(), sn, status))

    def _fault(self, sn: str) -> int:
        script = self._scripts.get(sn)
        if script:
            status = script.popleft()
            if not script:
                del self._scripts[sn]
            return status
        if self._drop_rate and self._rng.random() < self._drop_rate:
            return DROP
        if self._error_rate and self._rng.random() < self._error_rate:
            return 503
        return 200

    def _activate(
        self, pair: tuple[str, str] | None, sn: str, *, murano: bool
    ) -> tuple[int, Secret | None]:
        if pair is None or pair not in self._pairs:
            return (404 if murano else 403), None
        record = self._devices.get((*pair, sn))
        if record is None:
            return 404, None
        if self._state(record) is not State.PENDING:
            return 409, None
        record.state = State.ACTIVATED
        cik = secrets.token_hex(20)
        self._issued.append((sn, cik))
        return 200, Secret(cik)

    def _state(self, record: _Record) -> State:
        if record.state is State.PENDING and self._clock() - record.added_at > EXPIRY_SECONDS:
            return State.EXPIRED
        return record.state

    def _view(self, vendor: str, model: str, sn: str, record: _Record) -> Device:
        return Device(vendor, model, sn, self._state(record), self._calls[sn])


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


def _check_names(**names: str) -> None:
    for name, value in names.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def _check_range(value: float, name: str, upper: float = math.inf) -> float:
    if not 0 <= value <= upper:
        raise ValueError(f"{name} must be between 0 and {upper}, not {value}")
    return float(value)
