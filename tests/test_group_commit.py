"""Group commit, with the flush slowed down as an SD card's is.

bench/slowsync.c, preloaded into gatewayd, holds every ``syncfs`` for a while and
writes to a FIFO when each enters and returns. The node contract is driven by
mosquitto's own clients: ``mosquitto_pub`` and ``mosquitto_sub`` for a new node,
``mosquitto_rr`` (an MQTT v5 request with a response topic) for the others.

- No node receives its CIK before the flush that covers it has returned.
- While that flush is under way, an activated node's re-announce, an invalid
  announce and ``gatewayctl status`` are answered.
- A storm's CIKs share flushes.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, WAIT, Gateway

from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHIM = Path(__file__).resolve().parent.parent / "bench" / "slowsync.c"
HOLD = 2.0
"""How long each flush is held, in seconds."""


@pytest.fixture
def keyring_backend() -> str:
    """gatewayd's own store: its CIKs are what the flush covers."""
    return KEYRING_BACKENDS["file"]


@pytest.fixture
def registry() -> Registry:
    """The simulator's log on the monotonic clock, the shim's clock."""
    registry = Registry(clock=time.monotonic)
    registry.add_pair(VENDOR, MODEL)
    return registry


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None, "a C compiler is needed (make deps installs gcc)"
    built = tmp_path_factory.mktemp("shim") / "slowsync.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(built), str(SHIM), "-ldl"], check=True)
    return built


class Flushes:
    """The shim's reports, read from a FIFO as they come: (call, "enter" or "return", time)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "flushes"
        os.mkfifo(self.path)
        # read and write: never at end of file while no flush is under way
        self._fd = os.open(self.path, os.O_RDWR)
        self._events: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with os.fdopen(self._fd, "r") as fifo:
            for line in fifo:
                if line == "end\n":
                    return
                call, what, at = line.split()
                self._events.put((call, what, float(at)))

    def close(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.write(fd, b"end\n")
        finally:
            os.close(fd)
        self._reader.join(WAIT)

    def next(self, timeout: float = WAIT) -> tuple[str, str, float]:
        return self._events.get(timeout=timeout)

    def count_until_quiet(self, quiet: float) -> int:
        """How many flushes entered until none came for ``quiet`` seconds."""
        entered = 0
        while True:
            try:
                _call, what, _at = self._events.get(timeout=quiet)
            except queue.Empty:
                return entered
            entered += what == "enter"


@pytest.fixture
def slow_gateway(
    gateway: Callable[..., Gateway], shim: Path, tmp_path: Path
) -> Iterator[Callable[[float], tuple[Gateway, Flushes]]]:
    made: list[Flushes] = []

    def make(hold: float) -> tuple[Gateway, Flushes]:
        flushes = Flushes(tmp_path)
        made.append(flushes)
        gw = gateway()
        gw.env |= {
            "LD_PRELOAD": str(shim),
            "SLOWSYNC_MS": f"{hold * 1000:g}",
            "SLOWSYNC_CALLS": "syncfs",
            "SLOWSYNC_LOG": str(flushes.path),
        }
        gw.start()
        return gw, flushes

    yield make
    for flushes in made:
        flushes.close()


class Lines:
    """A client's output lines, each with the monotonic time it arrived."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            ["stdbuf", "-oL", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put((time.monotonic(), line.strip()))

    def first(self, wanted: Callable[[str], bool], timeout: float = WAIT) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while True:
            at, line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if wanted(line):
                return at, line

    def close(self) -> None:
        self.process.kill()
        self.process.wait(WAIT)
        self._reader.join(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()


def client(tool: str, broker: Broker, *args: str) -> list[str]:
    return [tool, "-h", broker.host, "-p", str(broker.port), "-q", "1", *args]


def announce_topic(sn: str) -> str:
    return f"gatewayd/nodes/{sn}/announce"


def rr(broker: Broker, sn: str, payload: str = "{}") -> tuple[float, dict[str, object]]:
    """mosquitto_rr: an announce with a response topic; the answer and when it came."""
    response = f"gatewayd/nodes/{sn}/reply"  # under the node's own subtree
    argv = client("mosquitto_rr", broker, "-t", announce_topic(sn), "-e", response, "-m", payload)
    done = subprocess.run(
        [*argv, "-W", "10"], check=False, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic(), json.loads(done.stdout)


def test_no_node_receives_its_cik_before_the_flush_that_covers_it_returns(
    slow_gateway: Callable[[float], tuple[Gateway, Flushes]],
    broker: Broker,
    registry: Registry,
    node: Callable[..., SimulatedNode],
) -> None:
    gw, flushes = slow_gateway(HOLD)
    for sn in ("SN-DONE", "SN-NEW"):
        registry.add(VENDOR, MODEL, sn)
    assert node("SN-DONE").activate(timeout=WAIT)["status"] == "activated"
    assert flushes.count_until_quiet(0.5) >= 2  # the write-ahead record, then the CIK

    credentials = "gatewayd/nodes/SN-NEW/credentials"
    listener = Lines(client("mosquitto_sub", broker, "-d", "-t", credentials))
    try:
        listener.first(lambda line: "SUBACK" in line)
        publish = client("mosquitto_pub", broker, "-t", announce_topic("SN-NEW"), "-m", "{}")
        subprocess.run(publish, check=True, timeout=WAIT)
        entered = covering_flush(flushes, registry, "SN-NEW")
        during = {
            "re-announce": rr(broker, "SN-DONE"),
            "invalid announce": rr(broker, "SN-BAD", payload="not json"),
        }
        status = gw.ctl("status")
        answered_status = time.monotonic()
        call, what, returned = flushes.next()
        assert (call, what) == ("syncfs", "return")
        received, line = listener.first(lambda line: line.startswith("{") and "activated" in line)
    finally:
        listener.close()
    assert returned - entered >= HOLD * 0.9
    assert received >= returned, "a CIK was published before the flush that covers it returned"
    assert json.loads(line)["cik"] == dict(registry.issued())["SN-NEW"]
    assert status.returncode == 0, status.stderr
    assert entered <= answered_status < returned, "gatewayctl status waited for the flush"
    for kind, (answered, _body) in during.items():
        assert entered <= answered < returned, f"the {kind} waited for the flush"
    assert during["re-announce"][1]["status"] == "activated"
    assert during["re-announce"][1]["cik"] == dict(registry.issued())["SN-DONE"]
    assert during["invalid announce"][1]["status"] == "rejected"


def covering_flush(flushes: Flushes, registry: Registry, sn: str) -> float:
    """When the flush that covers the CIK of ``sn`` entered: the first flush to enter after
    Exosite issued it."""
    while True:
        _call, what, at = flushes.next()
        log = registry.request_log()
        issued = [e.time for e in log if e.sn == sn and e.status == 200]
        if what == "enter" and issued and issued[0] <= at:
            return at


def test_a_storm_of_cik_shares_flushes(
    slow_gateway: Callable[[float], tuple[Gateway, Flushes]],
    registry: Registry,
    node: Callable[..., SimulatedNode],
) -> None:
    gw, flushes = slow_gateway(0.2)
    serials = [f"SN-STORM{i:02d}" for i in range(24)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    nodes = [node(sn) for sn in serials]
    for n in nodes:
        n.announce(wait=False)
    for n in nodes:
        assert n.activate(timeout=WAIT)["status"] == "activated"
    flushed = flushes.count_until_quiet(1.0)
    assert flushed < len(serials), f"{flushed} flushes for {len(serials)} CIKs"
    assert gw.stop() == 0
