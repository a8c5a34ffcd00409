"""The daemon against a broker that is down at start, or refuses it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, Gateway

from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.e2e


def test_a_broker_down_at_start_is_waited_for(
    broker: Broker,
    registry: Registry,
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
) -> None:
    broker.stop()
    gw = gateway()
    gw.start(wait_connected=False)
    gw.wait_for(r"gatewayd \S+ started")
    gw.wait_for(r"broker 127\.0\.0\.1:\d+ unreachable")
    assert gw.process is not None
    assert gw.process.poll() is None
    broker.start()
    gw.wait_for("subscribed to ")
    registry.add(VENDOR, MODEL, "SN-B1")
    assert node("SN-B1").activate()["status"] == "activated"
    assert gw.stop() == 0


def test_a_broker_that_refuses_gatewayd_is_retried(tmp_path: Path, simulator: Simulator) -> None:
    refusing = Broker(tmp_path, anonymous=False)
    refusing.start()
    gw = Gateway(tmp_path / "gw", refusing, simulator)
    try:
        gw.start(wait_connected=False)
        assert gw.watcher is not None
        first = gw.wait_for(r"broker 127\.0\.0\.1 refused the connection")
        gw.watcher.wait_for(r"refused the connection", start=gw.watcher.lines.index(first) + 1)
        assert gw.process is not None
        assert gw.process.poll() is None
        assert gw.stop(signal.SIGTERM) == 0
    finally:
        gw.stop(signal.SIGKILL)
        refusing.stop()
