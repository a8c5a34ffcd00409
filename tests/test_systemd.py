"""sd_notify: the rules, and what the daemon says on a real NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway, messages_until

from gatewayd.adapters.statedb import DB_NAME
from gatewayd.adapters.systemd import Notifier
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    notifier.ready("x")
    assert notifier._socket is None  # not even a socket was made
    assert notifier.watchdog_interval is None


def test_messages_reach_a_path_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("broker disconnected; 0 activated")
    assert sock.recv(4096) == b"READY=1\nSTATUS=broker disconnected; 0 activated"
    notifier.stopping("stopping")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    notifier.close()


def test_an_abstract_socket_name() -> None:
    name = f"gatewayd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(WAIT)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.watchdog()
        notifier.close()
        assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_enabled_rules(environ: dict[str, str], interval: float | None) -> None:
    assert Notifier(environ).watchdog_interval == interval


@pytest.mark.e2e
def test_the_daemon_is_ready_before_the_broker_and_keeps_the_watchdog_fed(
    broker: Broker,
    gateway: Callable[..., Gateway],
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    broker.stop()
    gw = gateway()
    gw.env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    gw.start(wait_connected=False)
    (ready,) = [m for m in messages_until(sock, "READY=1") if "READY=1" in m]
    assert "STATUS=broker disconnected; 0 activated, 0 pending, 0 rejected" in ready
    broker.start()
    gw.wait_for("subscribed to ")
    seen = messages_until(sock, "STATUS=broker connected; 0 activated, 0 pending, 0 rejected")
    seen += messages_until(sock, "WATCHDOG=1")
    seen += messages_until(sock, "WATCHDOG=1")
    assert seen.count("WATCHDOG=1") >= 2
    gw.send(signal.SIGTERM)
    stopping = messages_until(sock, "STOPPING=1")[-1]
    assert stopping.startswith("STOPPING=1\nSTATUS=stopping; broker connected")
    assert gw.stop(signum=None) == 0


@pytest.mark.e2e
def test_a_blocked_main_loop_stops_feeding_the_watchdog(
    registry: Registry,
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
    notify_socket: tuple[socket.socket, str],
) -> None:
    """The main thread waits on a locked state database: no WATCHDOG=1 until it is free."""
    sock, path = notify_socket
    registry.add(VENDOR, MODEL, "SN-W1")
    gw = gateway()
    gw.env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    gw.start()
    messages_until(sock, "WATCHDOG=1")
    lock = sqlite3.connect(gw.state_dir / DB_NAME, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    n = node("SN-W1")
    n.announce()  # the first save of its record waits for the lock (sqlite's 5 s timeout)
    gw.wait_for(r"node SN-W1: announce received")
    sock.settimeout(0)  # what was sent before the main loop blocked
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(4096)
    sock.settimeout(2.0)
    starved = []
    try:
        while True:
            starved.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    assert "WATCHDOG=1" not in starved  # 2 s without a ping: systemd's 0.4 s would have fired
    lock.execute("COMMIT")
    lock.close()
    sock.settimeout(WAIT)
    messages_until(sock, "WATCHDOG=1")
    assert gw.process is not None
    assert gw.process.poll() is None


@pytest.mark.e2e
def test_a_link_that_cannot_be_set_up_after_ready_stops_the_daemon_with_a_message(
    gateway: Callable[..., Gateway], notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    """READY=1 comes before the broker and vendor links are built: one that fails then
    still ends the start with exit 1 and a line that says why, not a traceback."""
    sock, path = notify_socket
    token_file = tmp_path / "vendor-token"
    token_file.write_text("a token\twith a tab in it")  # no HTTP header can carry it
    gw = gateway(exosite={"vendor_token_file": str(token_file)})
    gw.env |= {"NOTIFY_SOCKET": path}
    gw.start(wait_connected=False)
    messages_until(sock, "READY=1")
    assert gw.stop(signum=None) == 1
    log = gw.log_text()
    assert "cannot start: the vendor token is empty or holds characters" in log
    assert "Traceback" not in log


@pytest.mark.e2e
def test_a_bad_proxy_variable_stops_the_start_with_a_message_that_names_it(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway()
    gw.env |= {"http_proxy": "http://user:s3cret-pw@:3128"}
    gw.start(wait_connected=False)
    assert gw.stop(signum=None) == 1
    log = gw.log_text()
    assert "cannot start" in log
    assert "http_proxy in the environment" in log
    assert "exosite.ca_file" not in log
    assert "s3cret-pw" not in log


@pytest.mark.e2e
def test_a_notify_socket_nobody_reads_neither_stops_the_loop_nor_floods_it(
    registry: Registry,
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
    notify_socket: tuple[socket.socket, str],
) -> None:
    """systemd's queue holds a handful of datagrams: once it is full, gatewayd goes on, and
    it sends STATUS= as a summary (about once a second), not once per node event."""
    sock, path = notify_socket
    serials = [f"SN-N{i:02d}" for i in range(30)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    gw = gateway()
    gw.env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    gw.start()
    started = time.monotonic()
    nodes = [node(sn) for sn in serials]
    for n in nodes:
        n.announce(wait=False)
    for n in nodes:  # nothing reads the notify socket meanwhile
        assert n.activate(timeout=WAIT)["status"] == "activated"
    gw.wait_for(r"systemd does not read its notify socket; \d+ notifications dropped")
    took = time.monotonic() - started
    assert gw.stop() == 0
    sock.settimeout(0.5)
    said = []
    with contextlib.suppress(TimeoutError):
        while True:  # what the queue took while nobody read it: the first few
            said.append(sock.recv(4096).decode())
    assert said[0].startswith("READY=1\nSTATUS="), said  # the queue holds gatewayd's datagrams
    statuses = [m for m in said if m.startswith("STATUS=")]
    assert len(statuses) <= took + 2
