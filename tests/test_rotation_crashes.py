"""A CIK replaced, killed at every crash point, ends with the node holding a working CIK.

Two paths: a rotation (``gatewayctl rotate``), and a CIK Exosite refuses (the
node says so, ``cik_rejected``; gatewayd checks it, writes the record that says
so, retires the CIK, activates the node again and, with ``auto_reenable``,
re-enables the serial and activates it once more). A baseline run of the path,
traced with strace, counts the calls of each syscall of :data:`CALLS` that one
of gatewayd's threads makes along it. Then, for every syscall and every N up to
that count, a fresh gatewayd with a freshly activated node is killed
(``signal=KILL``) at the N-th such call; gatewayd starts again, the node
re-announces until it is answered, and the CIK it ends with is one Exosite (the
simulator) accepts.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, WAIT, Gateway
from crashpoints import calls_per_thread, traced

from gatewayd.sim import Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CALLS = ("fsync", "syncfs", "rename", "unlink", "sendto", "connect")
"""The calls along a rotation or a retire whose interruption could lose the old or the new
CIK, or leave the refused one handed out."""
TOKEN = "tok-rotation-crash"
SETTLE = 10.0
REFUSED = json.dumps({"cik_rejected": True}).encode()


class Point:
    """One gatewayd, one activated node, one rotation (killed, or not), then the check."""

    def __init__(
        self, folder: Path, broker: Broker, sim: Simulator, node: Callable[..., SimulatedNode]
    ) -> None:
        token = folder / "vendor-token"
        folder.mkdir(parents=True)
        token.write_text(TOKEN + "\n")
        self.sn = f"RC-{folder.name}"
        sim.registry.add(VENDOR, MODEL, self.sn)
        self.sim = sim
        self.gw = Gateway(
            folder,
            broker,
            sim,
            gateway={"log_level": "info", "id": folder.name},
            keyring={"backend": KEYRING_BACKENDS["file"]},
            exosite={"vendor_token_file": str(token), "auto_reenable": True},
            nodes={"check_interval": 0.001},
        )
        self.gw.start()
        self.node = node(self.sn)
        body = self.node.activate(timeout=WAIT)
        assert body["status"] == "activated"
        self.old = str(body["cik"])

    def rotate_under(self, inject: str | None, log: Path) -> None:
        """Rotate with strace injecting ``inject``; until the node has its new CIK, or
        gatewayd is dead."""
        gw = self.gw
        assert gw.process is not None
        syscall = inject.split(":", 1)[0] if inject else ",".join(CALLS)
        with traced(gw.process.pid, log, syscall, inject):
            gw.ctl("rotate", self.sn)
            deadline = time.monotonic() + SETTLE
            while time.monotonic() < deadline and gw.process.poll() is None:
                if self._answered(0.1) == "activated":
                    return

    def refuse_under(self, inject: str | None, log: Path) -> None:
        """Make the node's CIK refused (regenerated, as in Portals) and have the node say so,
        with strace injecting ``inject``; until the node has a working CIK, or gatewayd is
        dead."""
        gw = self.gw
        assert gw.process is not None
        self.sim.registry.regenerate(VENDOR, MODEL, self.sn)
        syscall = inject.split(":", 1)[0] if inject else ",".join(CALLS)
        with traced(gw.process.pid, log, syscall, inject):
            self.node.publish(self.node.announce_topic, REFUSED)
            deadline = time.monotonic() + SETTLE
            while time.monotonic() < deadline and gw.process.poll() is None:
                if self._working(0.1):
                    return

    def _working(self, timeout: float) -> bool:
        """An answer came with a CIK Exosite accepts."""
        try:
            answer = self.node.next_answer(timeout)
        except TimeoutError:
            return False
        cik = answer.body.get("cik")
        return cik is not None and self.sim.registry.check(str(cik)).status == 200

    def _answered(self, timeout: float) -> str | None:
        try:
            answer = self.node.next_answer(timeout)
        except TimeoutError:
            return None
        if answer.topic != self.node.credentials_topic:
            return None
        return str(answer.body.get("status"))

    @property
    def killed(self) -> bool:
        return self.gw.process is not None and self.gw.process.poll() is not None

    def check(self, *, refused: bool = False) -> None:
        """Start gatewayd again, cleanly; the node re-announces until answered, and the CIK
        it ends with is one Exosite accepts. ``refused``: the node's CIK was refused, and it
        says so in each announce until it has one that works."""
        gw = self.gw
        assert gw.process is not None
        if gw.process.poll() is None:
            gw.stop(signal.SIGTERM)
        else:
            gw.stop(signum=None)
        gw.start()
        if refused:
            deadline = time.monotonic() + WAIT
            while not self._working(1.0):
                assert time.monotonic() < deadline, "no working CIK"
                self.node.publish(self.node.announce_topic, REFUSED)
        else:
            body = self.node.activate(timeout=WAIT)
            assert body["status"] == "activated", body
            assert self.sim.registry.check(str(body["cik"])).status == 200, "a CIK that fails"
        assert gw.stop() == 0

    def close(self) -> None:
        self.node.close()
        self.gw.stop(signal.SIGKILL)


@pytest.fixture
def points(
    tmp_path: Path, broker: Broker, simulator: Simulator, node: Callable[..., SimulatedNode]
) -> Iterator[Callable[[], Point]]:
    simulator.registry.set_vendor_token(TOKEN)
    made: list[Point] = []
    count = itertools.count()

    def make() -> Point:
        made.append(Point(tmp_path / f"p{next(count)}", broker, simulator, node))
        return made[-1]

    yield make
    for point in made:
        point.close()


def walk(
    tmp_path: Path,
    points: Callable[[], Point],
    capsys: pytest.CaptureFixture[str],
    name: str,
    *,
    refused: bool,
) -> dict[str, int]:
    """A baseline run of the path (a rotation, or a refused CIK replaced), then a fresh
    gatewayd killed at every point it counted; each ends with a working CIK. The calls
    per thread of the baseline."""

    def run(point: Point, inject: str | None, log: Path) -> None:
        if refused:
            point.refuse_under(inject, log)
        else:
            point.rotate_under(inject, log)

    baseline = points()
    log = tmp_path / "baseline.strace"
    run(baseline, None, log)
    baseline.check(refused=refused)
    counts = calls_per_thread(log)
    injected = [
        f"{syscall}:signal=KILL:when={n}"
        for syscall, count in sorted(counts.items())
        for n in range(1, count + 1)
    ]
    killed = 0
    for inject in injected:
        point = points()
        run(point, inject, tmp_path / "point.strace")
        killed += point.killed
        point.check(refused=refused)
        point.close()
    said = ", ".join(f"{call} {count}" for call, count in sorted(counts.items()))
    with capsys.disabled():  # the figure belongs in the CI log
        print(
            f"\n{name}: {len(injected)} crash points covered, {killed} of them killing "
            f"gatewayd ({said} calls per thread)"
        )
    assert killed == len(injected)
    return counts


def test_every_crash_point_of_a_rotation_ends_with_a_working_cik(
    tmp_path: Path,
    points: Callable[[], Point],
    capsys: pytest.CaptureFixture[str],
) -> None:
    counts = walk(tmp_path, points, capsys, "rotation", refused=False)
    assert counts.get("syncfs", 0) >= 2, counts  # the record saying rotating; the new CIK


def test_every_crash_point_of_a_refused_cik_replaced_ends_with_a_working_cik(
    tmp_path: Path,
    points: Callable[[], Point],
    capsys: pytest.CaptureFixture[str],
) -> None:
    counts = walk(tmp_path, points, capsys, "refused CIK retired and replaced", refused=True)
    assert counts.get("unlink", 0) >= 1, counts  # the refused CIK retired
