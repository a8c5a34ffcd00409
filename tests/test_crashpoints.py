"""Every crash point of an activation, enumerated with strace's fault injection.

A baseline activation, traced, counts the calls of each syscall in
:data:`crashpoints.SYSCALLS` that one of gatewayd's threads makes. Then, for
every syscall and every N up to that count, a fresh gatewayd activates a fresh
node while strace makes the N-th such call fail: ``signal=KILL`` (a crash right
there) and, for the calls that write, ``error=EIO`` and ``error=ENOSPC``. The
same is done for a batch of three nodes announcing at once. After each point:

- every serial Exosite was asked about has a record on disk (no request left
  before its write-ahead record was durable);

then gatewayd starts again, cleanly, the nodes re-announce until answered, and:

- every CIK the simulator issued is in the keystore, or its node is in
  ``needs_reenable``;
- no node was ever handed anything but the last CIK the simulator issued to it;
- every node got a final answer.

The number of points covered is printed.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, WAIT, Gateway
from crashpoints import SYSCALLS, WriteAheadProbe, calls_per_thread, traced
from faults_support import read_keyring, read_records

from gatewayd.core.model import State
from gatewayd.sim import Simulator
from gatewayd.sim.node import FINAL, NodeTimeoutError, SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WRITES = frozenset({"write", "pwrite64", "fsync", "fdatasync", "syncfs", "rename"})
"""The calls an error is injected into, besides a kill (a network error is any answer's
business: tests/test_answers.py)."""
SETTLE = 10.0
"""How long an activation under a fault may take to end (answered, or the process dead)."""


class Point:
    """One gatewayd, one fault, the nodes it activates; then the checks."""

    def __init__(
        self,
        folder: Path,
        broker: Broker,
        sim: Simulator,
        node: Callable[..., SimulatedNode],
        serials: list[str],
        probe: WriteAheadProbe,
    ) -> None:
        self.serials = serials
        self.gw = Gateway(
            folder,
            broker,
            sim,
            # a broker session of its own: none of an earlier point's announces wait in it
            gateway={"log_level": "info", "id": folder.name},
            keyring={"backend": KEYRING_BACKENDS["file"]},
        )
        for sn in serials:
            sim.registry.add(VENDOR, MODEL, sn)
            probe.state_dirs[sn] = self.gw.state_dir
        self.sim = sim
        self.nodes = [node(sn) for sn in serials]
        self.handed: dict[str, set[str]] = {sn: set() for sn in serials}

    def activate_under(self, inject: str | None, log: Path) -> None:
        """Announce every node with strace injecting ``inject``; wait until each is answered
        or gatewayd is dead."""
        gw = self.gw
        gw.start()
        assert gw.process is not None
        syscall = inject.split(":", 1)[0] if inject else ",".join(SYSCALLS)
        with traced(gw.process.pid, log, syscall, inject):
            for n in self.nodes:
                n.announce(wait=False)
            self._settle(gw)

    def _settle(self, gw: Gateway) -> None:
        deadline = time.monotonic() + SETTLE
        waiting = set(self.serials)
        while waiting and time.monotonic() < deadline:
            assert gw.process is not None
            if gw.process.poll() is not None:
                return
            for n in self.nodes:
                if n.sn in waiting and self._heard(n, 0.05) in FINAL:
                    waiting.discard(n.sn)

    def _heard(self, n: SimulatedNode, timeout: float) -> str | None:
        try:
            answer = n.next_answer(timeout)
        except NodeTimeoutError:
            return None
        if answer.topic != n.credentials_topic:
            return None
        if answer.body.get("status") == "activated":
            self.handed[n.sn].add(str(answer.body["cik"]))
        return str(answer.body.get("status"))

    def check(self) -> None:
        """Stop, check the records on disk, start clean, re-announce, check the invariant."""
        gw = self.gw
        assert gw.process is not None
        if gw.process.poll() is None:
            gw.stop(signal.SIGTERM)
        else:
            gw.stop(signum=None)
        records = read_records(gw.state_dir)
        asked = {e.sn for e in self.sim.registry.request_log() if e.sn in self.serials}
        assert asked <= set(records), f"requests sent without a record: {asked - set(records)}"
        gw.start()
        for n in self.nodes:
            deadline = time.monotonic() + WAIT
            n.announce(wait=False)
            while (status := self._heard(n, 1.0)) not in FINAL:
                assert time.monotonic() < deadline, f"{n.sn}: no final answer after a restart"
                if status is None:
                    n.announce(wait=False)
        assert gw.stop() == 0
        records = read_records(gw.state_dir)
        stored = read_keyring(gw.state_dir, self.serials)
        issued: dict[str, list[str]] = {}
        for sn, cik in self.sim.registry.issued():
            issued.setdefault(sn, []).append(cik)
        for sn in self.serials:
            assert self.handed[sn] <= set(issued.get(sn, [])[-1:]), f"{sn}: handed a wrong CIK"
            for cik in issued.get(sn, []):
                lost = records[sn].state is State.NEEDS_REENABLE
                assert stored.get(sn) == cik or lost, f"{sn}: an issued CIK is lost"

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        self.gw.stop(signal.SIGKILL)


@pytest.fixture
def probe(simulator: Simulator) -> WriteAheadProbe:
    return WriteAheadProbe(simulator)


@pytest.fixture
def points(
    tmp_path: Path,
    broker: Broker,
    simulator: Simulator,
    node: Callable[..., SimulatedNode],
    probe: WriteAheadProbe,
) -> Iterator[Callable[[int], Point]]:
    made: list[Point] = []
    count = itertools.count()

    def make(size: int) -> Point:
        i = next(count)
        serials = [f"CP{i:04d}-{j}" for j in range(size)]
        made.append(Point(tmp_path / f"point{i}", broker, simulator, node, serials, probe))
        return made[-1]

    yield make
    for point in made:
        point.close()


def faults(counts: dict[str, int]) -> list[str]:
    """Every injection to try: each syscall's every call, killed, and failed if it writes."""
    injected = []
    for syscall, count in sorted(counts.items()):
        actions = ["signal=KILL"] + (["error=EIO", "error=ENOSPC"] if syscall in WRITES else [])
        injected += [f"{syscall}:{a}:when={n}" for n in range(1, count + 1) for a in actions]
    return injected


@pytest.mark.parametrize("size", [1, 3], ids=["one node", "a batch of three"])
def test_every_crash_point_keeps_the_invariant(
    size: int,
    tmp_path: Path,
    points: Callable[[int], Point],
    probe: WriteAheadProbe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = points(size)
    log = tmp_path / f"baseline-{size}.strace"
    baseline.activate_under(None, log)
    baseline.check()
    counts = calls_per_thread(log)
    assert counts.get("syncfs", 0) >= 2, counts  # the write-ahead records' flush, the CIKs'
    injected = faults(counts)
    for inject in injected:
        before = len(probe.violations)
        point = points(size)
        point.activate_under(inject, tmp_path / "point.strace")
        point.check()
        point.close()
        assert len(probe.violations) == before, f"{inject}: a request before its record"
    assert probe.checked > len(injected)
    said = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    with capsys.disabled():  # the figure belongs in the CI log
        print(f"\n{size} node(s): {len(injected)} crash points covered ({said} calls per thread)")
