"""Helpers of the fault tests: a fleet of simulated nodes, waits on log lines, readers.

A :class:`Fleet` drives many :class:`~gatewayd.sim.node.SimulatedNode` from
one thread, as each node's firmware would: announce, then re-announce with
a doubling backoff until a final answer (``activated`` or ``rejected``)
arrives. Answers are recorded as they come, on paho's threads, and waiters
are woken by them; nothing here sleeps to synchronise.
"""

from __future__ import annotations

import heapq
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conftest import KEYRING_BACKENDS, MODEL, VENDOR, Gateway

from gatewayd.adapters.keystore import Keystore, open_backend
from gatewayd.adapters.statedb import StateDB
from gatewayd.core.model import Node
from gatewayd.sim import Registry
from gatewayd.sim.node import FINAL, Received, SimulatedNode

MakeNode = Callable[..., SimulatedNode]

ACTIVATED_LINE = r"node \S+: credentials activated"


class Fleet:
    """Simulated nodes that announce until answered, driven by one thread.

    A node is answered when it receives one of the ``done`` statuses on its
    credentials topic (by default a final one: ``activated`` or ``rejected``).
    With ``reannounce`` off each node announces exactly once, and gatewayd
    alone must bring it to a final answer.
    """

    def __init__(
        self,
        make_node: MakeNode,
        serials: Iterable[str],
        *,
        first_wait: float = 1.0,
        cap: float = 4.0,
        reannounce: bool = True,
        done: frozenset[str] = FINAL,
        seed: int = 0,
    ) -> None:
        """``done``: the statuses after which a node stops announcing."""
        self._done = done
        self._rng = random.Random(seed)  # noqa: S311 (jitter, not secrets)
        self._first_wait = first_wait
        self._cap = cap
        self._reannounce = reannounce
        self._cond = threading.Condition()
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._final: dict[str, dict[str, Any]] = {}
        self.announces: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, name="fleet", daemon=True)
        serials = list(serials)
        for sn in serials:
            self._answers[sn] = []
        with ThreadPoolExecutor(8) as pool:  # 300 CONNECT/SUBSCRIBE round trips, 8 at a time
            made = pool.map(lambda sn: make_node(sn, on_answer=self._heard), serials)
            self.nodes = {node.sn: node for node in made}

    # ------------------------------------------------------------- driving

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)

    def _drive(self) -> None:
        now = time.monotonic()
        due: list[tuple[float, str, float]] = []
        for sn, node in self.nodes.items():
            self._announce(node)
            heapq.heappush(due, (now + self._first_wait, sn, self._first_wait))
        while due and self._reannounce:
            when, sn, wait = due[0]
            if self._stop.wait(max(0.0, when - time.monotonic())):
                return
            heapq.heappop(due)
            with self._cond:
                answered = sn in self._final
            if not answered:
                self._announce(self.nodes[sn])
                wait = min(wait * 2, self._cap)
                # jittered, as firmware should, so that a fleet does not re-announce in step
                again = time.monotonic() + wait * self._rng.uniform(0.5, 1.0)
                heapq.heappush(due, (again, sn, wait))

    def _announce(self, node: SimulatedNode) -> None:
        with self._cond:
            self.announces[node.sn] += 1
        node.announce(wait=False)

    def _heard(self, node: SimulatedNode, answer: Received) -> None:
        if answer.topic != node.credentials_topic:
            return
        with self._cond:
            self._answers[node.sn].append(answer.body)
            if answer.body.get("status") in self._done:
                self._final.setdefault(node.sn, answer.body)
            self._cond.notify_all()

    # ------------------------------------------------------------- reading

    def wait_until(
        self, test: Callable[[Fleet], bool], timeout: float, what: str = "the condition"
    ) -> None:
        """Wait, woken by each answer, until ``test(self)`` holds; AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: test(self), timeout):
                missing = sorted(set(self.nodes) - set(self._final))
                raise AssertionError(
                    f"{what}: not within {timeout:g} s; {len(missing)} nodes without a final "
                    f"answer, e.g. {missing[:5]}"
                )

    def wait_final(self, timeout: float) -> None:
        self.wait_until(lambda f: len(f._final) == len(f.nodes), timeout, "every node answered")

    def final(self) -> dict[str, dict[str, Any]]:
        """The answer that ended each node's announcing, for the nodes that have one."""
        with self._cond:
            return dict(self._final)

    def answers(self, sn: str) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._answers[sn])

    def count(self, sn: str, status: str) -> int:
        """Answers with ``status`` that ``sn`` received; call with or without the lock."""
        return sum(1 for body in self._answers[sn] if body.get("status") == status)

    def ciks(self, sn: str) -> set[str]:
        """Every CIK ``sn`` received in an ``activated`` answer."""
        with self._cond:
            return {str(b["cik"]) for b in self._answers[sn] if b.get("status") == "activated"}


# ------------------------------------------------------------------ the log


def wait_lines(gw: Gateway, pattern: str, count: int, timeout: float) -> int:
    """Wait until at least ``count`` lines of this run of ``gw`` match; return how many do."""
    watcher = gw.watcher
    assert watcher is not None
    regex = re.compile(pattern)
    seen = [0, 0]  # lines scanned, matches among them

    def enough() -> bool:
        lines = watcher.lines
        seen[1] += sum(1 for line in lines[seen[0] :] if regex.search(line))
        seen[0] = len(lines)
        return seen[1] >= count

    with watcher._cond:
        if not watcher._cond.wait_for(enough, timeout):
            tail = "\n".join(watcher.lines[-10:])
            raise TimeoutError(f"{seen[1]} of {count} lines matching {pattern!r}; last:\n{tail}")
    return seen[1]


def count_lines(gw: Gateway, pattern: str) -> int:
    watcher = gw.watcher
    assert watcher is not None
    regex = re.compile(pattern)
    with watcher._cond:
        return sum(1 for line in watcher.lines if regex.search(line))


# ------------------------------------------------------- state and keyring


def read_records(state_dir: Path) -> dict[str, Node]:
    """Every node record, read as gatewayctl reads them (read-only)."""
    with StateDB.in_dir(state_dir, readonly=True) as db:
        return {node.sn: node for node in db.all()}


def read_keyring(state_dir: Path, serials: Iterable[str]) -> dict[str, str]:
    """The CIK stored for each serial that has one, from gatewayd's own keyring files, once
    the writes a kill cut between fsync and rename are completed, as gatewayd's next start
    completes them (call it only while gatewayd is not running)."""
    backend = open_backend(KEYRING_BACKENDS["file"], state_dir / "keyring", None)
    keystore = Keystore(backend, "gatewayd")
    keystore.recover()
    stored = {}
    for sn in serials:
        cik = keystore.load(VENDOR, MODEL, sn)
        if cik is not None:
            stored[sn] = cik.reveal()
    return stored


def issued_by_sn(registry: Registry) -> dict[str, list[str]]:
    """Every CIK the simulator issued, per serial, oldest first."""
    issued: dict[str, list[str]] = {}
    for sn, cik in registry.issued():
        issued.setdefault(sn, []).append(cik)
    return issued


def unanswered_at(
    registry: Registry, moment: float, latency: float, until: float | None = None
) -> list[tuple[str, int]]:
    """Activation requests received but not yet answered at ``moment`` (the simulator's clock).

    The simulator decides (and issues a CIK) when a request arrives and
    answers ``latency`` later, so these are the ones it received in the
    ``latency`` before ``moment`` (or before ``until``, when the process
    took that long to die): (serial, the status it was going to answer).
    """
    end = moment if until is None else until
    return [
        (entry.sn, entry.status)
        for entry in registry.request_log()
        if moment - latency < entry.time <= end
        and str(getattr(entry, "call", "activate")) == "activate"
    ]
