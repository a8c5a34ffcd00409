"""CIKs the keystore did not take (disk full, read-only file system, a backend error).

Such a CIK is kept in memory and its node is still answered; a CRITICAL line is
logged, no new activation request starts, and the write is retried, with a
growing interval, until it succeeds. Only then is the node's record saved as
``activated``: a crash meanwhile leaves the write-ahead record that tells what
was lost. CIKs are stored in the order received: none is stored behind one
that is held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from gatewayd.adapters import logs
from gatewayd.core.actions import Log, StoreCik
from gatewayd.core.model import Node
from gatewayd.core.timers import backoff_ceiling

log = logging.getLogger(__name__)

STORE_RETRY_BASE: Final = 0.5
STORE_RETRY_CAP: Final = 30.0
_LATE: Final = "CIK stored after retrying"


class Held:
    """``pause`` and ``resume`` stop and restart new activation requests."""

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        self.ciks: dict[str, StoreCik] = {}
        """CIKs received that the keystore has not taken yet: they exist only here."""
        self.records: dict[str, Node] = {}
        """The last record of each node whose CIK is held: saved once it is stored."""
        self._failures = 0
        self._retry_at: float | None = None
        self._retrying = False

    def __contains__(self, sn: str) -> bool:
        return sn in self.ciks

    def __bool__(self) -> bool:
        return bool(self.ciks)

    def queue(self, action: StoreCik) -> None:
        """Hold a CIK behind those held already, to be stored after them."""
        self.ciks[action.sn] = action

    def settled(
        self, stored: Sequence[StoreCik], failed: Sequence[tuple[StoreCik, str]]
    ) -> list[Node]:
        """What a flush came to: a held CIK now stored leaves (the records that waited for
        it are returned, to be saved); a CIK that failed is held, said at CRITICAL (a
        retry's failure once), and the next retry scheduled."""
        retried = any(self.ciks.get(c.sn) is c for c in (*stored, *(c for c, _ in failed)))
        if retried:
            self._retrying = False
        records = self._leave(stored)
        again = None
        for action, problem in failed:
            if self.ciks.get(action.sn) is action:
                again = again or (action, problem)
            else:
                self.ciks[action.sn] = action
                self._refused(action, problem)
        if again is not None:
            self._refused(*again)
        if not self.ciks:
            if self._failures or retried:
                self._failures = 0
                self._retry_at = None
                self._resume()
        elif retried and again is None:
            self._retry_at = time.monotonic()  # held while a retry was under way: next
        return records

    def _leave(self, stored: Sequence[StoreCik]) -> list[Node]:
        """Held CIKs among ``stored`` leave; the records that waited for them."""
        records = []
        for action in stored:
            if self.ciks.get(action.sn) is action:
                del self.ciks[action.sn]
                logs.emit(Log("cik_stored_late", logging.WARNING, _LATE, action.sn))
                record = self.records.pop(action.sn, None)
                if record is not None:
                    records.append(record)
        return records

    def _refused(self, action: StoreCik, problem: str) -> None:
        self._pause()
        self._failures += 1
        delay = backoff_ceiling(self._failures, STORE_RETRY_BASE, 2.0, STORE_RETRY_CAP)
        self._retry_at = time.monotonic() + delay
        text = (
            f"CIK received but not stored ({problem}); kept in memory and retried in "
            f"{delay:.1f} s; no new activation starts meanwhile"
        )
        logs.emit(Log("cik_unstored", logging.CRITICAL, text, action.sn))

    def due(self) -> float | None:
        """When the next attempt to store the held CIKs is due, if any are held."""
        return None if not self.ciks or self._retrying else self._retry_at

    def retry(self, now: float) -> list[StoreCik]:
        """The held CIKs to store again, in order, once the retry is due."""
        due = self.due()
        if due is None or now < due:
            return []
        self._retrying = True
        return list(self.ciks.values())

    def lost(self) -> bool:
        """At the end of a stop: whether CIKs the keystore never took are lost, said if so."""
        if not self.ciks:
            return False
        log.critical(
            "stopped with CIKs the keystore never took, for %s: they were delivered to "
            "their nodes but are not kept here; re-enable those devices if the nodes lose them",
            ", ".join(sorted(self.ciks)),
        )
        return True
