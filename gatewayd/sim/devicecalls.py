"""The registry's answers to the calls a device makes with its CIK: the check of a
CIK, the One Platform RPC's lookup and the HTTP Data API, with the values the
device keeps. :class:`~gatewayd.sim.registry.Registry` has them; they share its
lock, its faults and its request log, and hold the CIK book it issues from.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from gatewayd.sim.ciks import CikBook
from gatewayd.sim.dataports import DataError, Dataports, DataRequest, Point
from gatewayd.sim.faults import Faults
from gatewayd.sim.model import Call, DataAnswer, Device, LogEntry, ManageAnswer


class DeviceCalls(Faults):
    """Each call is counted apart (:meth:`checks`, :meth:`lookups`, :meth:`data_calls`),
    under its device's serial, or "" for a CIK that is nobody's, and logged."""

    _clock: Callable[[], float]
    _log: list[LogEntry]

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self._ciks = CikBook()
        self._data = Dataports()
        self._checks: Counter[str] = Counter()
        self._lookups: Counter[str] = Counter()
        self._data_calls: Counter[str] = Counter()

    def check(self, cik: str | None) -> ManageAnswer:
        """Count, answer and log one check of a CIK: after the drop and error rates, 200
        while it is its device's current CIK (the answer names the device), else 401."""
        return self._by_cik(Call.CHECK, cik, self._checks, well_formed=True)

    def lookup(self, cik: str | None, *, well_formed: bool = True) -> ManageAnswer:
        """Count, answer and log one One Platform RPC request made with ``cik``.

        After the drop and error rates: 400 if not ``well_formed``, else as
        :meth:`check`: 200 naming the device while ``cik`` is its current CIK,
        else 401. Counted apart: :meth:`lookups`.
        """
        return self._by_cik(Call.LOOKUP, cik, self._lookups, well_formed=well_formed)

    def checks(self, sn: str) -> int:
        """Checks of a CIK of ``sn`` (a CIK that is nobody's counts under "")."""
        with self._lock:
            return self._checks[sn]

    def lookups(self, sn: str) -> int:
        """RPC requests made with a CIK of ``sn`` (with a CIK that is nobody's, or none: "")."""
        with self._lock:
            return self._lookups[sn]

    def data(self, call: Call, cik: str | None, request: DataRequest | DataError) -> DataAnswer:
        """Count, answer and log one request of the HTTP Data API (:attr:`Call.WRITE`,
        ``READ`` or ``RECORD``) made with ``cik``.

        After the drop and error rates: 401 unless ``cik`` is its device's
        current CIK, then the status of ``request`` if it is a :class:`DataError`,
        else the request is carried out on the device's values (see
        :class:`~gatewayd.sim.dataports.Dataports`). Counted apart: :meth:`data_calls`.
        """
        with self._lock:
            device = self._holder(cik)
            sn = "" if device is None else device.sn
            self._data_calls[sn] += 1
            delay = self._latency + self._sn_latency.get(sn, 0.0)
            status = self._random_fault()
            result = None
            if status != 200:
                device = None
            elif device is None:
                status = 401
            elif isinstance(request, DataError):
                status = request.status
            else:
                key = (device.vendor, device.model, device.sn)
                result = self._data.apply(key, request, int(self._clock()))
                status = result.status
            self._log.append(LogEntry(self._clock(), sn, status, call))
        return DataAnswer(status, device, result, delay)

    def data_calls(self, sn: str) -> int:
        """Data API requests made with a CIK of ``sn`` (a CIK that is nobody's, or none: "")."""
        with self._lock:
            return self._data_calls[sn]

    def points(self, vendor: str, model: str, sn: str, alias: str) -> list[Point]:
        """The (timestamp, value) pairs the device keeps for ``alias``, oldest first."""
        with self._lock:
            return self._data.points((vendor, model, sn), alias)

    def _by_cik(
        self, call: Call, cik: str | None, counter: Counter[str], *, well_formed: bool
    ) -> ManageAnswer:
        with self._lock:
            device = self._holder(cik)
            sn = "" if device is None else device.sn
            counter[sn] += 1
            delay = self._latency + self._sn_latency.get(sn, 0.0)
            status = self._random_fault()
            if status == 200 and not well_formed:
                status = 400
            elif status == 200 and device is None:
                status = 401
            if status != 200:
                device = None
            self._log.append(LogEntry(self._clock(), sn, status, call))
        return ManageAnswer(status, device, delay)

    def _holder(self, cik: str | None) -> Device | None:
        """The view of the device whose current CIK ``cik`` is; called with the lock held."""
        raise NotImplementedError
