"""End to end: gatewayd as a subprocess, a real mosquitto, the simulator over HTTP."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, Gateway

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.core.model import State as EngineState
from gatewayd.sim import Registry, Simulator, State
from gatewayd.sim.node import Received, SimulatedNode

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]


def issued_cik(registry: Registry, sn: str) -> str:
    (cik,) = [c for s, c in registry.issued() if s == sn]
    return cik


def answers_until_final(node: SimulatedNode, timeout: float = 20.0) -> list[dict[str, object]]:
    """Collect answers on the credentials topic, without re-announcing, until a final one."""
    seen = []
    while True:
        answer = node.next_answer(timeout)
        if answer.topic != node.credentials_topic:
            continue
        seen.append(answer.body)
        if answer.body["status"] in {"activated", "rejected"}:
            return seen


def gatewayctl(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return gw.ctl(*args)


def test_activation_and_reannounce_from_the_keyring(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-A1")
    gw = gateway()
    gw.start()
    n = node("SN-A1")
    body = n.activate()
    cik = issued_cik(registry, "SN-A1")
    assert body == {
        "sn": "SN-A1",
        "status": "activated",
        "cik": cik,
        "vendor": VENDOR,
        "model": MODEL,
    }
    calls = registry.calls("SN-A1")
    assert calls == 1
    again = n.activate()
    assert again["cik"] == cik
    assert registry.calls("SN-A1") == calls
    gw.wait_for(r"node SN-A1: credentials republished")
    shown = gatewayctl(gw, "show", "SN-A1", "--json", "--reveal")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["state"], record["cik"]) == ("activated", cik)
    assert gw.stop() == 0


@pytest.mark.parametrize(
    ("setup", "model", "reason", "status"),
    [
        ("unknown", None, "unknown_serial", 404),
        ("ghost-model", "ghost", "invalid_vendor_model", 403),
        ("activated-elsewhere", None, "not_activatable", 409),
    ],
)
def test_refusals_give_their_reason(
    setup: str,
    model: str | None,
    reason: str,
    status: int,
    registry: Registry,
    gateway: MakeGateway,
    node: MakeNode,
) -> None:
    if setup == "activated-elsewhere":
        registry.add(VENDOR, MODEL, "SN-R1", state=State.ACTIVATED)
    gw = gateway(exosite={"models": [MODEL, "ghost"]})
    gw.start()
    body = node("SN-R1").activate(model=model)
    assert body["status"] == "rejected"
    assert (body["reason"], body["http_status"]) == (reason, status)
    assert isinstance(body["message"], str)
    assert body["message"]
    if status == 409:
        assert "Portals" in body["message"]
    gw.wait_for(rf"node SN-R1: rejected: {reason}")


def test_409_for_a_node_with_a_stored_cik_republishes_it(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-C1")
    gw = gateway()
    gw.start()
    n = node("SN-C1")
    cik = n.activate()["cik"]
    assert gw.stop() == 0
    # the state database is lost, the keyring is not
    for path in gw.state_dir.glob("state.sqlite3*"):
        path.unlink()
    gw.start()
    body = n.activate()
    assert body["cik"] == cik
    assert registry.calls("SN-C1") == 2
    gw.wait_for(r"node SN-C1: credentials republished")


def test_transient_failures_then_activated_without_a_reannounce(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-P1")
    registry.script("SN-P1", [503, 503])
    gw = gateway()
    gw.start()
    n = node("SN-P1")
    n.announce()
    seen = answers_until_final(n)
    assert [a["status"] for a in seen] == ["pending", "pending", "activated"]
    assert all(isinstance(a["retry_in"], int) for a in seen[:2])
    assert seen[-1]["cik"] == issued_cik(registry, "SN-P1")
    assert registry.calls("SN-P1") == 3


def test_restart_serves_stored_ciks(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    for sn in ("SN-S1", "SN-S2"):
        registry.add(VENDOR, MODEL, sn)
    gw = gateway()
    gw.start()
    ciks = {sn: node(sn).activate()["cik"] for sn in ("SN-S1", "SN-S2")}
    assert gw.stop() == 0
    gw.start()
    for sn, cik in ciks.items():
        assert node(sn, client_id=f"again-{sn}").activate()["cik"] == cik
    assert registry.total_calls() == 2


def test_announce_while_stopped_is_answered_after_start(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-Q1")
    gw = gateway()
    gw.start()
    assert gw.stop() == 0
    n = node("SN-Q1")
    n.announce()  # the broker keeps it in gatewayd's session
    gw.start()
    (body,) = answers_until_final(n)
    assert body["cik"] == issued_cik(registry, "SN-Q1")


@pytest.mark.parametrize("protocol", [4, 5])
def test_mqtt_protocol_versions(
    protocol: int, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-V1")
    gw = gateway(mqtt={"protocol": protocol})
    gw.start()
    assert node("SN-V1", protocol=protocol).activate()["status"] == "activated"


MALFORMED = [
    ("SN-M1", b"{not json", "not valid JSON"),
    ("SN-M2", b"[1, 2, 3]", "not a JSON object"),
    ("SN-M3", b'{"model": "toaster"}', "not one of the allowed models"),
    ("SN-M4", b'{"sn": "SOMEONE-ELSE"}', "differs from the topic"),
    ("SN-M5", b"{" + b" " * (1024 * 1024) + b"}", "over 4096 bytes"),
    ("bad*serial", b"", "does not match sn_pattern"),
]


def test_malformed_announces_are_answered_and_survived(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    gw = gateway()
    gw.start()
    for sn, payload, message in MALFORMED:
        n = node(sn)
        n.publish(n.announce_topic, payload)
        answer = n.next_answer()
        assert answer.topic == n.credentials_topic
        assert answer.body["status"] == "rejected"
        assert answer.body["reason"] == "invalid_request"
        assert message in str(answer.body["message"])
    registry.add(VENDOR, MODEL, "SN-OK")
    assert node("SN-OK").activate()["status"] == "activated"
    assert registry.total_calls() == 1
    assert gw.process is not None
    assert gw.process.poll() is None


def test_mqtt5_response_topic_is_answered_with_its_correlation_data(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-T1")
    gw = gateway()
    gw.start()
    n = node("SN-T1")
    reply = "gatewayd/nodes/SN-T1/reply/42"
    outside = "gatewayd/nodes/SN-T2/reply"
    n.subscribe(reply)
    n.subscribe(outside)
    n.announce(response_topic=outside, correlation=b"nope")
    n.announce(response_topic=reply, correlation=b"\x00corr-7")
    got: dict[str, Received] = {}
    while len(got) < 2:
        answer = n.next_answer()
        got[answer.topic] = answer
    assert set(got) == {n.credentials_topic, reply}
    assert got[reply].correlation == b"\x00corr-7"
    assert got[reply].body == got[n.credentials_topic].body
    assert got[reply].body["status"] == "activated"


def test_logs_name_nodes_but_hold_no_cik(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    serials = [f"SN-L{i}" for i in range(3)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    gw = gateway()
    gw.start()
    for sn in serials:
        node(sn).activate()
    assert gw.stop() == 0
    text = gw.log_text()
    issued = registry.issued()
    assert len(issued) == 3
    for sn, cik in issued:
        assert f"node {sn}: credentials activated" in text
        assert cik not in text


def test_sigterm_and_sigint_exit_cleanly(gateway: MakeGateway) -> None:
    gw = gateway()
    gw.start()
    assert gw.stop(signal.SIGTERM) == 0
    gw.start()
    assert gw.stop(signal.SIGINT) == 0
    assert "gatewayd stopped" in gw.log_text()


def test_state_database_holds_no_secret(
    registry: Registry, gateway: MakeGateway, node: MakeNode, simulator: Simulator
) -> None:
    registry.add(VENDOR, MODEL, "SN-D1")
    gw = gateway()
    gw.start()
    cik = node("SN-D1").activate()["cik"]
    assert gw.stop() == 0
    with sqlite3.connect(gw.state_dir / "state.sqlite3") as db:
        rows = db.execute("SELECT * FROM nodes").fetchall()
    assert len(rows) == 1
    assert "activated" in rows[0]
    assert all(cik not in str(value) for value in rows[0])
    raw = b"".join(p.read_bytes() for p in gw.state_dir.glob("state.sqlite3*"))
    assert str(cik).encode() not in raw
    assert simulator.url.startswith("http://127.0.0.1:")


def test_sigterm_waits_for_the_request_in_flight_and_keeps_its_cik(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-F1")
    registry.latency = 1.0
    gw = gateway()
    gw.start()
    n = node("SN-F1")
    n.announce()
    gw.wait_for(r"node SN-F1: activation request sent")
    assert gw.stop(signal.SIGTERM) == 0
    assert registry.calls("SN-F1") == 1
    registry.latency = 0.0
    gw.start()
    body = n.activate()
    assert body["cik"] == issued_cik(registry, "SN-F1")
    assert registry.calls("SN-F1") == 1


def _refused_by_the_keystore(
    keyring_backend: str, registry: Registry, gateway: MakeGateway, node: MakeNode, sn: str
) -> tuple[Gateway, Path, dict[str, object]]:
    """Activate ``sn`` while gatewayd's keyring folder cannot be written (a file is in its
    place); returns the gateway, that file, and the node's answer."""
    if not keyring_backend.startswith("gatewayd."):
        pytest.skip("breaks gatewayd's own keyring folder")
    registry.add(VENDOR, MODEL, sn)
    gw = gateway()
    gw.start()
    blocker = gw.state_dir / "keyring"
    blocker.rmdir()  # empty: the start's test entry is gone again
    blocker.write_text("not a folder")
    n = node(sn)
    n.announce()
    (body,) = answers_until_final(n)
    return gw, blocker, body


def stored_cik(gw: Gateway, sn: str) -> str | None:
    cik = Keystore(FileKeyring(gw.state_dir / "keyring")).load(VENDOR, MODEL, sn)
    return None if cik is None else cik.reveal()


def test_a_cik_the_keystore_cannot_take_is_kept_and_stored_later(
    keyring_backend: str, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    gw, blocker, body = _refused_by_the_keystore(keyring_backend, registry, gateway, node, "SN-K1")
    # the node is answered although its CIK is only in gatewayd's memory
    cik = issued_cik(registry, "SN-K1")
    assert body["cik"] == cik
    critical = r"CRITICAL .*node SN-K1: CIK received but not stored"
    assert gw.watcher is not None
    first = gw.wait_for(critical)
    gw.watcher.wait_for(critical, start=gw.watcher.lines.index(first) + 1)
    blocker.unlink()
    gw.wait_for(r"node SN-K1: CIK stored after retrying")
    assert gw.stop() == 0
    assert stored_cik(gw, "SN-K1") == cik
    with StateDB.in_dir(gw.state_dir, readonly=True) as db:
        record = db.get("SN-K1")
    assert record is not None
    assert record.state is EngineState.ACTIVATED
    assert registry.calls("SN-K1") == 1


def test_sigterm_waits_for_a_failing_keystore_and_says_so(
    keyring_backend: str, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    gw, blocker, _ = _refused_by_the_keystore(keyring_backend, registry, gateway, node, "SN-K2")
    gw.wait_for(r"node SN-K2: CIK received but not stored")
    gw.send(signal.SIGTERM)
    gw.wait_for(r"waiting up to \d+ s for the keystore to take 1 CIKs")
    blocker.unlink()
    assert gw.stop(signum=None) == 0
    assert stored_cik(gw, "SN-K2") == issued_cik(registry, "SN-K2")


def _lose_the_first_answer(registry: Registry, gw: Gateway, sn: str) -> None:
    """Exosite issues the CIK, but its answer comes after gatewayd's timeout."""
    registry.set_latency(sn, 1.5)
    gw.wait_for(rf"node {sn}: activation failed \(timeout")
    registry.set_latency(sn, 0.0)


def test_a_cik_lost_in_transit_needs_reenable(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-L1")
    gw = gateway(exosite={"timeout": 0.5})
    gw.start()
    n = node("SN-L1")
    n.announce()
    _lose_the_first_answer(registry, gw, "SN-L1")
    body = answers_until_final(n)[-1]
    assert (body["status"], body["reason"], body["http_status"]) == (
        "rejected",
        "not_activatable",
        409,
    )
    assert "re-enable the device in Portals" in str(body["message"])
    gw.wait_for(r"ERROR .*node SN-L1: needs re-enabling")
    listed = json.loads(gatewayctl(gw, "list", "--json").stdout)
    assert [(r["sn"], r["state"], r["uncertain"]) for r in listed] == [
        ("SN-L1", "needs_reenable", True)
    ]
    assert len(registry.issued()) == 1


def test_auto_reenable_recovers_a_cik_lost_in_transit(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    token = tmp_path / "vendor-token"
    token.write_text("tok-e2e-31337\n")
    registry.set_vendor_token("tok-e2e-31337")
    registry.add(VENDOR, MODEL, "SN-L2")
    gw = gateway(exosite={"timeout": 0.5, "auto_reenable": True, "vendor_token_file": str(token)})
    gw.start()
    n = node("SN-L2")
    n.announce()
    _lose_the_first_answer(registry, gw, "SN-L2")
    body = answers_until_final(n)[-1]
    assert body["status"] == "activated"
    first, second = (cik for sn, cik in registry.issued() if sn == "SN-L2")
    assert body["cik"] == second != first
    assert registry.manage_calls("SN-L2") == 1
    assert "tok-e2e-31337" not in gw.log_text()


def test_an_unreadable_cik_is_answered_pending_logged_and_shown_in_status(
    keyring_backend: str, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    if not keyring_backend.startswith("gatewayd."):
        pytest.skip("damages gatewayd's own keyring files")
    registry.add(VENDOR, MODEL, "SN-U1")
    gw = gateway()
    gw.start()
    n = node("SN-U1")
    assert n.activate()["status"] == "activated"
    (entry,) = (gw.state_dir / "keyring").iterdir()
    entry.write_bytes(b"damaged")
    for _ in range(3):
        n.announce()
        answer = n.next_answer()
        assert (answer.body["status"], answer.body["retry_in"]) == ("pending", 30)
    gw.wait_for(r"ERROR .*node SN-U1: its stored CIK cannot be read")
    assert gw.log_text().count("its stored CIK cannot be read") == 1  # once a minute at most
    status = json.loads(gatewayctl(gw, "status", "--json").stdout)
    assert status["unreadable_ciks"] == ["SN-U1"]
    assert status["state_database"] == "ok"
    assert registry.calls("SN-U1") == 1


def test_a_serial_named_like_the_gateways_broker_account_is_refused(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    """Under the example ACL a node's account is its serial: that one would be gatewayd's."""
    registry.add(VENDOR, MODEL, "gw-account")
    gw = gateway(mqtt={"username": "gw-account"})
    gw.start()
    n = node("gw-account")
    n.announce()
    answer = n.next_answer()
    assert (answer.body["status"], answer.body["reason"]) == ("rejected", "invalid_request")
    assert "own broker user name" in str(answer.body["message"])
    assert registry.calls("gw-account") == 0
