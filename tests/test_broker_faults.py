"""The daemon against a broker that is down at start, or refuses it."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, Gateway

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


@pytest.mark.slow
@pytest.mark.parametrize("keyring_backend", [KEYRING_BACKENDS["file"]])  # one is enough here
def test_publishes_the_broker_stops_acknowledging_are_an_error_shown_and_reconnected(
    broker: Broker,
    registry: Registry,
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
) -> None:
    """A broker that takes gatewayd's publishes and acknowledges none (here: stopped with
    SIGSTOP, its sockets left open): an ERROR once, the status says so, the answers
    connection is made anew; when the broker acknowledges again, gatewayd says so."""
    registry.add(VENDOR, MODEL, "SN-ACK")
    gw = gateway(mqtt={"keepalive": 5})
    gw.start()
    assert node("SN-ACK").activate()["status"] == "activated"
    process = broker._process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        assert gw.ctl("republish", "SN-ACK").returncode == 0  # a publish into the void
        error = gw.wait_for(r"ERROR .*has acknowledged none of gatewayd's publishes for 5 s")
        assert "reconnecting" in error
        status = json.loads(gw.ctl("status", "--json").stdout)
        assert status["publishes"]["waiting"] >= 1
        assert status["publishes"]["stalled_for"] >= 5
        shown = gw.ctl("status").stdout
        assert re.search(r"publishes\s+\d+ waiting, unacknowledged by the broker for \d+ s", shown)
    finally:
        process.send_signal(signal.SIGCONT)
    gw.wait_for(r"acknowledges gatewayd's publishes again, after \d+ s without")
    assert gw.log_text().count("has acknowledged none of gatewayd's publishes") == 1
    status = json.loads(gw.ctl("status", "--json").stdout)
    assert status["publishes"]["stalled_for"] is None
    assert gw.stop() == 0
