"""The simulator's model of Exosite: devices, their states, and the faults to inject.

The HTTP server answers each request on its own thread, so every read and
write here goes through one lock. Only :meth:`Registry.load` does I/O.

Besides activation it models the vendor management API: asking about a serial
(:attr:`Call.STATUS`) and re-enabling it (:attr:`Call.REENABLE`). The simulator
holds at most one vendor token, valid for every vendor it knows. A device's own
API, the calls made with its CIK (the check, the RPC lookup, the HTTP Data API),
is the part it has from :class:`~gatewayd.sim.devicecalls.DeviceCalls`.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gatewayd.adapters.redaction import remember
from gatewayd.core.secret import Secret
from gatewayd.sim.devicecalls import DeviceCalls
from gatewayd.sim.devices import State, read_devices_file
from gatewayd.sim.model import (
    EXPIRY_SECONDS,
    Answer,
    Call,
    Device,
    Fault,
    LogEntry,
    ManageAnswer,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Record:
    state: State
    added_at: float


class Registry(DeviceCalls):
    """Devices keyed by (vendor, model, sn), the CIKs issued to them, and the faults to inject.

    Serials are case-sensitive. A vendor/model pair is known once it has been
    registered, with :meth:`add_pair` or by adding a device to it. Faults are
    applied in this order: the serial's script (activation requests only), then
    the drop rate, then the error rate; latency (global plus per serial) delays
    every answer. Management requests need ``vendor_token`` (see
    :meth:`set_vendor_token`) and are counted apart: :meth:`manage_calls`.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        vendor_token: str | None = None,
    ) -> None:
        self._clock = clock
        super().__init__(rng)  # the lock, the faults, the CIK book, the device's own calls
        self._pairs: dict[tuple[str, str], None] = {}
        self._devices: dict[tuple[str, str, str], _Record] = {}
        self._issued: list[tuple[str, str]] = []
        self._calls: Counter[str] = Counter()
        self._manage_calls: Counter[str] = Counter()
        self._vendor_token: Secret | None = None
        self._log = []
        self.set_vendor_token(vendor_token)

    def set_vendor_token(self, token: str | None) -> None:
        """The token management requests must carry; None (the default) refuses them all (401).

        It must be non-empty printable ASCII, as an HTTP header carries it;
        it is kept as a :class:`Secret` and never logged.
        """
        if token is not None and not (token and token.isascii() and token.isprintable()):
            raise ValueError("the vendor token must be non-empty printable ASCII (not shown)")
        with self._lock:
            self._vendor_token = None if token is None else Secret(token)
        if token is not None:
            remember(token)  # never logged, by gatewayd or the simulator

    def add_pair(self, vendor: str, model: str) -> None:
        _check_names(vendor=vendor, model=model)
        with self._lock:
            self._pairs[vendor, model] = None

    def add(self, vendor: str, model: str, sn: str, state: State | str = State.PENDING) -> Device:
        """Add a device, or re-add it: its state starts over and its 24 h window with it, and
        the values written to it are gone."""
        _check_names(vendor=vendor, model=model, sn=sn)
        state = State(state)
        with self._lock:
            self._pairs[vendor, model] = None
            record = _Record(state, self._clock())
            self._devices[vendor, model, sn] = record
            self._data.clear((vendor, model, sn))
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

    def manage_calls(self, sn: str) -> int:
        """Management requests about ``sn``, whatever their answer (not in :meth:`calls`)."""
        with self._lock:
            return self._manage_calls[sn]

    def total_manage_calls(self) -> int:
        with self._lock:
            return self._manage_calls.total()

    def request_log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def activate(self, pair: tuple[str, str] | None, sn: str, *, murano: bool = False) -> Answer:
        """Count, answer and log one activation request.

        With ``murano``, an unknown pair (or None, no Murano product) answers 404
        (not whitelisted) rather than 403.
        """
        with self._lock:
            self._calls[sn] += 1
            delay = self._latency + self._sn_latency.get(sn, 0.0)
            scripted = self._fault(sn)
            status, fault = (200, scripted) if isinstance(scripted, Fault) else (scripted, None)
            cik = None
            if status == 200 and (fault is None or fault.issues):
                status, cik = self._activate(pair, sn, murano=murano)
            if fault is not None and status != 200:  # nothing to issue: the plain refusal
                fault = None
            self._log.append(LogEntry(self._clock(), sn, status))
        return Answer(status, cik, delay, fault)

    def manage(
        self, call: Call, model: str, sn: str, token: str | None, *, well_formed: bool = True
    ) -> ManageAnswer:
        """Count, answer and log one management request (:attr:`Call.STATUS` or ``REENABLE``).

        After the drop and error rates: 401 unless ``token`` is the vendor
        token, 400 if not ``well_formed``, 404 for an unknown model or serial
        (409 if the model is registered under more than one vendor), else 200
        for a status or 205 for a re-enable, which makes the device pending
        again with a fresh 24 h window, so that it can be activated once more.
        """
        if call is Call.ACTIVATE:
            raise ValueError("an activation is answered by activate(), not manage()")
        with self._lock:
            self._manage_calls[sn] += 1
            delay = self._latency + self._sn_latency.get(sn, 0.0)
            status = self._random_fault()
            device = None
            if status == 200:
                status, device = self._manage(call, model, sn, token, well_formed=well_formed)
            self._log.append(LogEntry(self._clock(), sn, status, call))
        return ManageAnswer(status, device, delay)

    def regenerate(self, vendor: str, model: str, sn: str) -> Secret:
        """Give the device a new CIK that no gateway holds, and return it: the one it had
        stops working (as regenerating a CIK in Portals does); the device stays activated."""
        with self._lock:
            if (vendor, model, sn) not in self._devices:
                raise KeyError((vendor, model, sn))
            return self._ciks.issue((vendor, model, sn))

    def record(self, sn: str, status: int) -> None:
        """Count and log a request the server answered by itself (a malformed one)."""
        with self._lock:
            self._calls[sn] += 1
            self._log.append(LogEntry(self._clock(), sn, status))

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
        cik = self._ciks.issue((*pair, sn))
        self._issued.append((sn, cik.reveal()))
        return 200, cik

    def _manage(
        self, call: Call, model: str, sn: str, token: str | None, *, well_formed: bool
    ) -> tuple[int, Device | None]:
        expected = self._vendor_token
        if (
            expected is None
            or token is None
            or not hmac.compare_digest(token.encode(), expected.reveal().encode())
        ):
            return 401, None
        if not well_formed:
            return 400, None
        vendors = [vendor for vendor, known in self._pairs if known == model]
        if len(vendors) > 1:
            return 409, None
        record = self._devices.get((vendors[0], model, sn)) if vendors else None
        if record is None:
            return 404, None
        if call is Call.REENABLE:
            record.state = State.PENDING
            record.added_at = self._clock()
            self._ciks.retire((vendors[0], model, sn))  # its CIK stops working
            return 205, self._view(vendors[0], model, sn, record)
        return 200, self._view(vendors[0], model, sn, record)

    def _holder(self, cik: str | None) -> Device | None:
        key = None if cik is None else self._ciks.holder(cik)
        return None if key is None else self._view(*key, self._devices[key])

    def _state(self, record: _Record) -> State:
        if record.state is State.PENDING and self._clock() - record.added_at > EXPIRY_SECONDS:
            return State.EXPIRED
        return record.state

    def _view(self, vendor: str, model: str, sn: str, record: _Record) -> Device:
        return Device(vendor, model, sn, self._state(record), self._calls[sn])


def _check_names(**names: str) -> None:
    for name, value in names.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
