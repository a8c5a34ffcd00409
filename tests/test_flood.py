"""A flood of announces, valid, invalid and oversized, while well-behaved nodes announce.

One client publishes 20,000 announces as fast as it can; 50 nodes meanwhile
announce as the contract says. gatewayd must keep running, answer every one
of the 50, keep its memory bounded, and never ask Exosite faster than
``max_rate``; and its answers must keep leaving while the flood is handled,
on a broker that drops what it cannot queue for a client (mosquitto 2.0.16 and
later drop any packet then, acknowledgements included).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway

from gatewayd.adapters.mqtt import new_client
from gatewayd.core.protocol import MAX_ANNOUNCE_BYTES
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FLOOD = 20_000
GOOD = 50
MAX_RATE = 50.0


def flood_message(i: int) -> tuple[str, bytes]:
    """The i-th message of the flood: a mix of every kind of announce."""
    kind = i % 6
    if kind == 0:  # a new, valid serial each time: Exosite would be asked
        return f"gatewayd/nodes/FLOOD{i}/announce", b"{}"
    if kind == 1:  # one serial, over and over: its own rate limit
        return "gatewayd/nodes/FLOOD-HOT/announce", b"{}"
    if kind == 2:  # not JSON
        return f"gatewayd/nodes/FLOODJ{i}/announce", b"{not json"
    if kind == 3:  # oversized
        return f"gatewayd/nodes/FLOODO{i}/announce", b" " * (MAX_ANNOUNCE_BYTES + 1000)
    if kind == 4:  # nested deep
        return f"gatewayd/nodes/FLOODD{i}/announce", b"[" * 500 + b"]" * 500
    return f"gatewayd/nodes/bad serial {i}/announce", b"{}"  # outside sn_pattern


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def most_in_one_second(times: list[float]) -> int:
    """The most requests that started within any one second."""
    times = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.fixture
def keyring_backend() -> str:
    return "gatewayd.adapters.keystore.FileKeyring"


def test_a_flood_does_not_stop_well_behaved_nodes(
    broker: Broker,
    registry: Registry,
    gateway: Callable[..., Gateway],
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = [f"GOOD{i:02d}" for i in range(GOOD)]
    for sn in good:
        registry.add(VENDOR, MODEL, sn)
    gw = gateway(
        gateway={"log_level": "info"},
        exosite={"max_rate": MAX_RATE, "max_concurrent": 4},
        nodes={"max_pending": 100, "announce_rate": 1.0, "announce_burst": 5},
    )
    gw.start()
    assert gw.process is not None
    pid = gw.process.pid
    before = rss_kib(pid)

    flooder = new_client("flooder")
    flooder.max_queued_messages_set(0)
    flooder.connect(broker.host, broker.port)
    flooder.loop_start()

    def behave(sn: str) -> dict[str, object]:
        with SimulatedNode(broker.host, broker.port, sn) as node:
            return node.activate(timeout=120)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=GOOD) as pool:
        answers = pool.map(behave, good)
        last = None
        for i in range(FLOOD):
            topic, payload = flood_message(i)
            last = flooder.publish(topic, payload, qos=i % 2)
        assert last is not None
        last.wait_for_publish(WAIT)
        flooded = time.monotonic() - started
        bodies = list(answers)
    elapsed = time.monotonic() - started
    flooder.loop_stop()
    flooder.disconnect()

    assert [b["status"] for b in bodies] == ["activated"] * GOOD
    assert gw.process.poll() is None
    after = rss_kib(pid)
    status = json.loads(gw.ctl("status", "--json").stdout)
    requests = [e.time for e in registry.request_log()]
    busiest = most_in_one_second(requests)
    with capsys.disabled():  # the figures belong in the CI log
        print(
            f"\n[flood] {FLOOD} announces in {flooded:.1f} s; {GOOD} nodes activated after "
            f"{elapsed:.1f} s; Exosite requests {len(requests)} over "
            f"{max(requests) - min(requests):.1f} s, at most {busiest} in one second "
            f"(max_rate {MAX_RATE:g}); announces dropped {status['announces_dropped']}; "
            f"RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
            f"(+{(after - before) / 1024:.1f} MiB); nodes {status['nodes']}"
        )
    # the limiter spaces request starts 1 / max_rate apart; their arrival at the
    # simulator jitters by a few milliseconds either way
    span = max(requests) - min(requests)
    assert len(requests) <= MAX_RATE * span + 2
    assert busiest <= MAX_RATE * 1.1 + 1
    assert status["announces_dropped"] > 0
    assert after - before < 64 * 1024, "resident memory grew by more than 64 MiB"
    gw.wait_for(r"node FLOOD-HOT: announces faster than 1 per second")


# ------------------------------------------- answers keep leaving during a flood

ANSWER_FLOOD = 20_000
ROUNDS = 4
"""Floods, one after another: the broker drops acknowledgements only while its queue for
gatewayd is full, so one flood stalls gatewayd's publishes in a third of the runs or so
(measured here before answers had a connection of their own)."""
KNOWN = 50
REANNOUNCE = 3.0
ANSWER_WINDOW = 40.0
"""How long the known nodes are given, from each flood on, to get two more answers (a
healthy run: about 15 s after the first flood, 6 s after each of the others)."""
HOT_SERIAL = "FLOOD-HOT"
NEWER_MOSQUITTO = Path(__file__).resolve().parent.parent / "build" / "mosquitto" / "usr" / "sbin"
"""Where `make` unpacks Debian 13's mosquitto (2.0.21, from bookworm-backports) on Debian 12."""


def answer_flood_message(i: int) -> tuple[str, bytes]:
    """The i-th message of the flood: one serial, 200 serials Exosite does not know,
    invalid JSON, and oversized (300 KB), too deep or with 5,000 keys, a quarter each."""
    kind, n = i % 4, i // 4
    if kind == 0:
        return f"gatewayd/nodes/{HOT_SERIAL}/announce", b"{}"
    if kind == 1:
        return f"gatewayd/nodes/UNKNOWN{n % 200:03d}/announce", b"{}"
    if kind == 2:
        return f"gatewayd/nodes/JUNK{n}/announce", b"{not json"
    if n % 3 == 0:
        return f"gatewayd/nodes/BIG{n}/announce", b" " * 300_000
    if n % 3 == 1:
        return f"gatewayd/nodes/DEEP{n}/announce", b"[" * 500 + b"]" * 500
    keys = ",".join(f'"k{k}":0' for k in range(5000))
    return f"gatewayd/nodes/KEYS{n}/announce", f"{{{keys}}}".encode()


def plain_broker(folder: Path) -> Broker:
    """mosquitto with its own defaults (max_queued_messages 1000 among them): the newest
    one at hand, Debian 13's where `make` has unpacked it."""
    newest = NEWER_MOSQUITTO / "mosquitto"
    binary = str(newest) if newest.exists() else shutil.which("mosquitto") or "mosquitto"
    folder.mkdir()
    broker = Broker(folder)
    conf = broker.conf.read_text()
    broker.conf.write_text(re.sub(r"^max_queued_messages .*\n", "", conf, flags=re.MULTILINE))
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(binary).parent), path])
    try:
        broker.start()
    finally:
        os.environ["PATH"] = path
    return broker


class AnswerCount:
    """Answers per serial, counted as they arrive, waited on with a deadline."""

    def __init__(self, serials: list[str]) -> None:
        self.counts = dict.fromkeys(serials, 0)
        self._cond = threading.Condition()

    def add(self, sn: str) -> None:
        with self._cond:
            if sn in self.counts:
                self.counts[sn] += 1
                self._cond.notify_all()

    def wait(self, more: int, than: dict[str, int], deadline: float) -> bool:
        """Whether every serial gets ``more`` answers than it had in ``than`` by ``deadline``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(n >= than[sn] + more for sn, n in self.counts.items()),
                deadline - time.monotonic(),
            )

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return dict(self.counts)

    def fewest(self) -> int:
        with self._cond:
            return min(self.counts.values())


@contextlib.contextmanager
def counting_subscriber(broker: Broker, count: AnswerCount) -> Iterator[None]:
    """mosquitto_sub on every node's credentials topic, counting the answers it sees."""
    argv = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-v"]
    argv += ["-i", "answer-counter", "-t", "gatewayd/nodes/+/credentials"]
    counter = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def count_lines() -> None:
        assert counter.stdout is not None
        for line in counter.stdout:
            count.add(line.split("/", 3)[2])

    reader = threading.Thread(target=count_lines, daemon=True)
    reader.start()
    try:
        yield
    finally:
        counter.terminate()
        counter.wait(WAIT)
        reader.join(WAIT)
        if counter.stdout is not None:
            counter.stdout.close()


@contextlib.contextmanager
def announcing_nodes(
    broker: Broker, serials: list[str], count: AnswerCount
) -> Iterator[Callable[[], None]]:
    """The nodes, subscribed; the callable starts their announces, one every REANNOUNCE
    seconds each (not waiting for an answer), until the block ends."""
    nodes: list[SimulatedNode] = []
    stop = threading.Event()

    def announce_every_few_seconds() -> None:
        while not stop.is_set():
            for node in nodes:
                node.announce(wait=False)
            stop.wait(REANNOUNCE)

    announcer = threading.Thread(target=announce_every_few_seconds, daemon=True)
    try:
        for sn in serials:
            node = SimulatedNode(
                broker.host, broker.port, sn, on_answer=lambda n, _a: count.add(n.sn)
            )
            node.connect()
            nodes.append(node)
        yield announcer.start
    finally:
        stop.set()
        if announcer.is_alive():
            announcer.join(WAIT)
        for node in nodes:
            node.close()


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _remaining_length(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def flood(broker: Broker, midway: Callable[[], None]) -> float:
    """Publish ANSWER_FLOOD announces at QoS 0 from one MQTT 3.1.1 client as fast as the
    broker takes them (``midway`` is called a tenth of the way through); the seconds it
    took. The packets are written straight to the socket: paho's per-message cost would
    make the flood slower than gatewayd takes it in."""
    with socket.create_connection((broker.host, broker.port), timeout=WAIT) as sock:
        connect = _string("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + _string("flooder")
        sock.sendall(_packet(0x10, connect))
        assert sock.recv(4)[:1] == b"\x20", "no CONNACK"
        started = time.monotonic()
        for i in range(ANSWER_FLOOD):
            topic, payload = answer_flood_message(i)
            sock.sendall(_packet(0x30, _string(topic) + payload))
            if i == ANSWER_FLOOD // 10:
                midway()
        sock.sendall(_packet(0xE0, b""))
        return time.monotonic() - started


def test_answers_keep_leaving_during_a_flood(
    tmp_path: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flood on gatewayd's subscription fills the broker's queue for it; the broker's
    acknowledgements of gatewayd's own publishes must not wait in (or be dropped from)
    that queue: every known node gets answer after answer while the flood is handled."""
    broker = plain_broker(tmp_path / "broker")
    version = re.search(r"mosquitto version (\S+) running", broker.log_path.read_text())
    known = [f"KNOWN{i:02d}" for i in range(KNOWN)]
    for sn in [*known, HOT_SERIAL]:
        simulator.registry.add(VENDOR, MODEL, sn)
    gw = Gateway(
        tmp_path / "gw",
        broker,
        simulator,
        gateway={"log_level": "info"},
        exosite={"max_rate": 20.0},
        keyring={"backend": "gatewayd.adapters.keystore.FileKeyring"},
    )
    seen, heard = AnswerCount(known), AnswerCount(known)
    rounds: list[str] = []
    got_them = True
    try:
        with counting_subscriber(broker, seen):
            gw.start()
            with announcing_nodes(broker, known, heard) as start_announcing:
                for round_ in range(ROUNDS):
                    before = seen.snapshot(), heard.snapshot()
                    started = time.monotonic()
                    flooded = flood(broker, start_announcing if round_ == 0 else lambda: None)
                    deadline = started + ANSWER_WINDOW
                    got_them = seen.wait(2, before[0], deadline)
                    got_them = got_them and heard.wait(2, before[1], deadline)
                    rounds.append(
                        f"flood {round_ + 1}: {ANSWER_FLOOD} announces in {flooded:.1f} s, "
                        f"every node 2 more answers {'after' if got_them else 'not in'} "
                        f"{time.monotonic() - started:.1f} s"
                    )
                    if not got_them:
                        break
            status = json.loads(gw.ctl("status", "--json").stdout)
            code = gw.stop()
    finally:
        gw.stop(signal.SIGKILL)
        broker.stop()
    with capsys.disabled():  # the figures belong in the CI log
        print(
            f"\n[flood answers] mosquitto {version.group(1) if version else '?'}: "
            f"{'; '.join(rounds)}; fewest answers a node had: {heard.fewest()} received, "
            f"{seen.fewest()} seen by mosquitto_sub; announces dropped "
            f"{status['announces_dropped']}; publishes {status.get('publishes')}"
        )
    assert got_them, (
        f"known nodes short of answers {ANSWER_WINDOW:g} s after a flood: "
        f"{sorted(sn for sn, n in seen.counts.items() if n < 2)[:10]}"
    )
    assert code == 0
    log_text = gw.log_text()
    assert "acknowledged none of gatewayd's publishes" not in log_text
    assert "offline status not delivered" not in log_text
    assert f"node {HOT_SERIAL}: credentials activated" in log_text
