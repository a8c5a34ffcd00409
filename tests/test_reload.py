"""SIGHUP: what a reload applies, what waits for a restart, and a bad file refused."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway, messages_until

from gatewayd.config.load import parse
from gatewayd.config.reload import LIVE, plan
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Output

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]

BASE = """
[gateway]
id = "gw1"
log_level = "info"
[mqtt]
host = "broker.local"
[exosite]
vendor = "acme"
model = "thermo-v1"
max_rate = 5.0
"""


def test_an_unchanged_file_changes_nothing() -> None:
    config = parse(BASE)
    change = plan(config, parse(BASE))
    assert (change.applied, change.restart) == ((), ())
    assert change.config == config


def test_live_keys_apply_and_the_others_wait_for_a_restart() -> None:
    running = parse(BASE)
    edited = BASE.replace('log_level = "info"', 'log_level = "debug"')
    edited = edited.replace("max_rate = 5.0", "max_rate = 20.0\nmodels = ['hygro']")
    edited = edited.replace('host = "broker.local"', 'host = "other.local"')
    edited += "[nodes]\nrejected_retry_after = 60\n"
    change = plan(running, parse(edited))
    assert set(change.applied) == {
        "gateway.log_level",
        "exosite.max_rate",
        "exosite.models",
        "nodes.rejected_retry_after",
    }
    assert change.restart == ("mqtt.host",)
    config = change.config
    assert (config.gateway.log_level, config.exosite.max_rate) == ("debug", 20.0)
    assert config.exosite.models == ("thermo-v1", "hygro")
    assert config.nodes.rejected_retry_after == 60.0
    assert config.mqtt.host == "broker.local"  # kept until a restart


def test_every_live_key_exists() -> None:
    config = parse(BASE)
    keys = {
        f"{name}.{f.name}"
        for name in ("gateway", "mqtt", "exosite", "keyring", "nodes")
        for f in dataclasses.fields(getattr(config, name))
    }
    assert keys >= LIVE


@pytest.fixture
def keyring_backend() -> str:
    return "gatewayd.adapters.keystore.FileKeyring"


@pytest.mark.e2e
def test_sighup_applies_allowed_models_and_reports_what_needs_a_restart(
    registry: Registry,
    gateway: MakeGateway,
    node: MakeNode,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    registry.add(VENDOR, "hygro", "SN-H1")
    gw = gateway(exosite={"models": [MODEL]})
    gw.env["NOTIFY_SOCKET"] = path
    gw.start()
    messages_until(sock, "READY=1")
    n = node("SN-H1")
    n.announce("hygro")
    answer = n.next_answer()
    assert answer.body["reason"] == "invalid_request"
    gw.rewrite(exosite={"models": [MODEL, "hygro"]}, mqtt={"keepalive": 30})
    gw.send(signal.SIGHUP)
    seen = messages_until(sock, "READY=1")
    (reloading,) = [m for m in seen if m.startswith("RELOADING=1\n")]
    assert re.search(r"^MONOTONIC_USEC=\d+$", reloading, re.MULTILINE)
    assert seen[-1].startswith("READY=1\nSTATUS=broker connected")
    gw.wait_for(r"INFO .*configuration reloaded from .*: exosite\.models$")
    gw.wait_for(r"WARNING .*changed in .* but applied only by a restart: mqtt\.keepalive$")
    assert n.activate("hygro")["status"] == "activated"
    assert gw.stop() == 0


@pytest.mark.e2e
def test_a_reload_of_a_bad_file_is_refused_and_the_daemon_goes_on(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-H2")
    gw = gateway()
    gw.start()
    gw.rewrite(exosite={"max_rate": -1})
    gw.send(signal.SIGHUP)
    line = gw.wait_for(r"reload refused, the running configuration is kept")
    assert re.search(r"exosite\.max_rate.*-1", line)
    assert node("SN-H2").activate()["status"] == "activated"
    assert gw.ctl("check-config").returncode == 2  # what the operator checks the file with
    assert gw.stop() == 0


@pytest.mark.e2e
def test_gatewayctl_reload_applies_the_file_and_says_what_it_did(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    """What the unit's ExecReload= runs: no signal, no /bin/kill."""
    registry.add(VENDOR, "hygro", "SN-H3")
    gw = gateway(exosite={"models": [MODEL]})
    gw.start()
    gw.rewrite(exosite={"models": [MODEL, "hygro"]}, mqtt={"keepalive": 30})
    done = gw.ctl("reload")
    assert done.returncode == 0, done.stderr
    assert "configuration reloaded from" in done.stdout
    assert "exosite.models" in done.stdout
    assert "applied only by a restart: mqtt.keepalive" in done.stdout
    assert node("SN-H3").activate("hygro")["status"] == "activated"
    gw.rewrite(exosite={"max_rate": -1})
    refused = gw.ctl("reload")  # gatewayctl checks the file first, and asks nothing
    assert refused.returncode == 2
    assert "exosite.max_rate" in refused.stderr
    assert gw.process is not None
    assert gw.process.poll() is None
    assert gw.stop() == 0


@pytest.mark.e2e
def test_a_sighup_while_starting_is_a_reload_once_started_not_death(
    gateway: MakeGateway,
) -> None:
    """The configuration is a FIFO: opening it for writing returns once gatewayd is reading
    it, long before its handlers are in place. A SIGHUP then waits, and reloads later."""
    gw = gateway()
    fifo = gw.folder / "config.fifo"
    os.mkfifo(fifo)
    text = gw.config_path.read_text()
    process = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "--config", str(fifo)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=gw.env,
    )
    watcher = Output("gatewayd", process.stderr, gw.log_path)
    try:
        with fifo.open("w") as config:  # gatewayd is reading its configuration now
            process.send_signal(signal.SIGHUP)
            config.write(text)
        watcher.wait_for(r"gatewayd \S+ started")
        with fifo.open("w") as config:  # the reload reads it again
            config.write(text)
        watcher.wait_for(r"configuration reloaded from .*config\.fifo: nothing changed")
        watcher.wait_for("subscribed to ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        watcher.close()
