"""The wall clock steps (NTP after a boot without a real-time clock); intervals do not.

The engine gets two injected clocks: a monotonic one for every interval and a
wall clock for the times a record keeps. Each test steps the wall clock by an
hour or a day, either way, while a retry, a rejection or an expiry is pending.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, FakeClock, Gateway, messages_until

from gatewayd.core.actions import Activate, Log, Publish
from gatewayd.core.deadlines import EXPIRY_WINDOW
from gatewayd.core.engine import Engine
from gatewayd.core.events import ActivationAnswered, Announced, Failed, Refused, Tick
from gatewayd.core.model import Node, Settings, State
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode

SETTINGS = Settings(vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1"}))
STEPS = [3600.0, -3600.0, 86400.0, -86400.0]


def upper(_low: float, high: float) -> float:
    return high


def fires(engine: Engine) -> list[str]:
    """What a Tick does now: the kinds of its actions."""
    return [
        a.kind if isinstance(a, Log) else type(a).__name__
        for a in engine.handle(Tick())
        if not isinstance(a, Log) or a.kind == "expiry_warning"
    ]


@pytest.fixture
def mono() -> FakeClock:
    return FakeClock(500.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def engine(mono: FakeClock, wall: FakeClock) -> Engine:
    return Engine(SETTINGS, [], mono, upper, wall=wall)


@pytest.mark.parametrize("step", STEPS)
def test_a_retry_fires_after_its_delay_whatever_the_wall_clock_does(
    engine: Engine, mono: FakeClock, wall: FakeClock, step: float
) -> None:
    engine.handle(Announced("SN1"))
    actions = engine.handle(ActivationAnswered("SN1", Failed("HTTP 503", 503)))
    (publish,) = (a for a in actions if isinstance(a, Publish))
    assert publish.answer.retry_in == 5
    wall.advance(step)
    mono.advance(4.9)
    wall.advance(4.9)
    assert fires(engine) == []
    assert engine.next_deadline() == 505.0
    mono.advance(0.1)
    assert fires(engine) == ["SaveNode", "Activate"]


@pytest.mark.parametrize("step", STEPS)
def test_no_false_expiry_warning_and_no_late_one(
    engine: Engine, mono: FakeClock, wall: FakeClock, step: float
) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(404)))  # rejected: no retries
    wall.advance(step)
    assert fires(engine) == []
    mono.advance(EXPIRY_WINDOW - 1)
    assert fires(engine) == []
    mono.advance(1)
    assert fires(engine) == ["SaveNode", "expiry_warning"]


@pytest.mark.parametrize("step", STEPS)
def test_a_rejection_is_held_for_its_interval_whatever_the_wall_clock_does(
    engine: Engine, mono: FakeClock, wall: FakeClock, step: float
) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(404)))
    wall.advance(step)
    mono.advance(299)
    assert [a for a in engine.handle(Announced("SN1")) if isinstance(a, Activate)] == []
    mono.advance(1)
    assert [a for a in engine.handle(Announced("SN1")) if isinstance(a, Activate)] != []


def test_a_stored_next_attempt_is_never_further_than_retry_cap(
    mono: FakeClock, wall: FakeClock
) -> None:
    """The clock was a day ahead when the record was written: the retry is not a day off."""
    node = Node(
        "SN1", "acme", "thermo-v1", State.PENDING, wall.now, attempts=3,
        next_attempt=wall.now + 86400,
    )  # fmt: skip
    engine = Engine(SETTINGS, [node], mono, upper, wall=wall)
    assert engine.next_deadline() == mono.now + SETTINGS.backoff_cap


def test_stored_times_are_wall_times(engine: Engine, mono: FakeClock, wall: FakeClock) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Failed("HTTP 503", 503)))
    node = engine.node("SN1")
    assert node is not None
    assert node.first_seen == wall.now
    assert node.next_attempt == wall.now + 5


# ------------------------------------------------------------------ the daemon

SHIM = Path(__file__).resolve().parent / "clockshim"


@pytest.mark.e2e
@pytest.mark.parametrize("step", STEPS, ids=["+1h", "-1h", "+1d", "-1d"])
def test_the_daemon_rides_out_a_clock_step(
    step: float,
    tmp_path: Path,
    registry: Registry,
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A retry far off and the watchdog on, then the wall clock steps: the retry waits its
    time, WATCHDOG=1 keeps coming, no false expiry warning; the operator's retry works."""
    sock, path = notify_socket
    offset = tmp_path / "clock-step"
    offset.write_text("0")
    registry.add(VENDOR, MODEL, "SN-C1")
    registry.script("SN-C1", [503])
    # full jitter draws the retry from [0, retry_base): a week makes one within the test
    # (a few seconds) a chance in 100,000
    gw = gateway(exosite={"retry_base": 604_800, "retry_cap": 604_800})
    gw.env |= {
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "400000",
        "GATEWAYD_TEST_CLOCK_STEP": str(offset),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), gw.env.get("PYTHONPATH")])),
    }
    gw.start()
    n = node("SN-C1")
    n.announce()
    assert n.next_answer().body["status"] == "pending"
    offset.write_text(str(step))
    assert gw.ctl("status").returncode == 0  # the main loop has looked at its deadlines
    (record,) = json.loads(gw.ctl("list", "--json").stdout)
    assert record["state"] == "pending"
    assert registry.calls("SN-C1") == 1
    sock.settimeout(WAIT)
    pings = [m for m in messages_until(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
    pings += [m for m in messages_until(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
    assert len(pings) >= 2
    assert gw.ctl("retry", "SN-C1").returncode == 0
    body = answers_until_final(n)
    assert body["status"] == "activated"
    assert gw.stop() == 0
    log = gw.log_text()
    assert "not activated" not in log
    assert "expiry" not in log
    assert registry.calls("SN-C1") == 2


def answers_until_final(n: SimulatedNode) -> dict[str, object]:
    while True:
        answer = n.next_answer(WAIT)
        if answer.topic == n.credentials_topic and answer.body["status"] != "pending":
            return answer.body
