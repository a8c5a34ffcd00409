"""The faults the simulator injects into its answers: latency, random errors and drops,
and a script of answers per serial. :class:`~gatewayd.sim.registry.Registry` has
them; they share its lock."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable

from gatewayd.sim.model import DROP, Fault


class Faults:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (faults, not secrets)
        self._latency = 0.0
        self._sn_latency: dict[str, float] = {}
        self._scripts: dict[str, deque[int | Fault]] = {}
        self._error_rate = 0.0
        self._drop_rate = 0.0

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

    def script(self, sn: str, statuses: Iterable[int | Fault]) -> None:
        """Answer the next requests for ``sn`` with these statuses, replacing any earlier script.

        200 means "behave normally", :data:`DROP` closes the connection without
        answering, a :class:`Fault` answers as it says, any other status is
        answered as it is. An empty list clears.
        """
        queue = deque(statuses)
        for status in queue:
            if isinstance(status, Fault):
                continue
            if status != DROP and not 100 <= status <= 599:
                raise ValueError(f"scripted status {status} is not an HTTP status or DROP")
        with self._lock:
            if queue:
                self._scripts[sn] = queue
            else:
                self._scripts.pop(sn, None)

    def _fault(self, sn: str) -> int | Fault:
        """The serial's next scripted answer, else a random fault, else 200."""
        script = self._scripts.get(sn)
        if script:
            status = script.popleft()
            if not script:
                del self._scripts[sn]
            return status
        return self._random_fault()

    def _random_fault(self) -> int:
        if self._drop_rate and self._rng.random() < self._drop_rate:
            return DROP
        if self._error_rate and self._rng.random() < self._error_rate:
            return 503
        return 200


def _check_range(value: float, name: str, upper: float = math.inf) -> float:
    if not 0 <= value <= upper:
        raise ValueError(f"{name} must be between 0 and {upper}, not {value}")
    return float(value)
