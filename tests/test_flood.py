"""A flood of announces, valid, invalid and oversized, while well-behaved nodes announce.

One client publishes 20,000 announces as fast as it can; 50 nodes meanwhile
announce as the contract says. gatewayd must keep running, answer every one
of the 50, keep its memory bounded, and never ask Exosite faster than
``max_rate``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway

from gatewayd.adapters.mqtt import new_client
from gatewayd.core.protocol import MAX_ANNOUNCE_BYTES
from gatewayd.sim import Registry
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
