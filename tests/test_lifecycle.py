"""A CIK's life after its activation, end to end: gatewayd as a subprocess, mosquitto, the
simulator. The node side is played by gatewayd's simulated node for the first
activation and by ``mosquitto_rr`` (an MQTT 5 request with a response topic) for
the announces that say Exosite refuses the node's CIK (``"cik_rejected": true``).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL, THIRD_PARTY, VENDOR, WAIT, Gateway

from gatewayd.adapters.mqtt import new_client
from gatewayd.adapters.statedb import StateDB
from gatewayd.config.load import load
from gatewayd.core.model import Node, State
from gatewayd.daemon.wiring import open_keystore
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]
TOKEN = "tok-lifecycle-4242"
REJECTED = json.dumps({"cik_rejected": True})


def rr(broker: Broker, sn: str, payload: str) -> dict[str, object]:
    """An announce with a response topic, by mosquitto_rr; the first answer to it."""
    argv = ["mosquitto_rr", "-h", broker.host, "-p", str(broker.port), "-q", "1"]
    argv += ["-t", f"gatewayd/nodes/{sn}/announce", "-e", f"gatewayd/nodes/{sn}/reply"]
    done = subprocess.run(
        [*argv, "-m", payload, "-W", "20"],
        check=False,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def accepted(registry: Registry, cik: object) -> bool:
    """Whether the simulator accepts ``cik`` now (a check it counts like any other)."""
    return registry.check(str(cik)).status == 200


def activated(
    tmp_path: Path,
    registry: Registry,
    gateway: MakeGateway,
    node: MakeNode,
    sn: str,
    **exosite: object,
) -> tuple[Gateway, str]:
    """gatewayd running, with ``sn`` activated; its CIK."""
    token = tmp_path / "vendor-token"
    token.write_text(TOKEN + "\n")
    registry.set_vendor_token(TOKEN)
    registry.add(VENDOR, MODEL, sn)
    gw = gateway(exosite={"vendor_token_file": str(token), **exosite})
    gw.start()
    body = node(sn).activate(timeout=WAIT)
    assert body["status"] == "activated"
    return gw, str(body["cik"])


def test_a_cik_exosite_accepts_is_handed_out_again_checked_once_per_interval(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode, broker: Broker
) -> None:
    gw, cik = activated(tmp_path, registry, gateway, node, "SN-OK")
    first = rr(broker, "SN-OK", REJECTED)
    assert (first["status"], first["cik"], first.get("checked")) == ("activated", cik, True)
    assert registry.lookups("SN-OK") == 1
    second = rr(broker, "SN-OK", REJECTED)  # within check_interval: from the keystore
    assert (second["status"], second["cik"], second.get("checked")) == ("activated", cik, None)
    assert registry.lookups("SN-OK") == 1
    assert registry.calls("SN-OK") == 1  # never activated again
    gw.wait_for(r"INFO .*node SN-OK: CIK checked: Exosite accepts it")


def test_a_regenerated_cik_is_replaced_through_the_vendor_api_with_auto_reenable(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode, broker: Broker
) -> None:
    gw, old = activated(tmp_path, registry, gateway, node, "SN-RG", auto_reenable=True, timeout=2)
    registry.regenerate(VENDOR, MODEL, "SN-RG")
    answer = rr(broker, "SN-RG", REJECTED)
    assert answer["status"] == "activated"
    new = answer["cik"]
    assert new != old
    assert accepted(registry, new)
    assert not accepted(registry, old)
    assert registry.manage_calls("SN-RG") == 2  # the refusal confirmed, then the re-enable
    again = rr(broker, "SN-RG", "{}")
    assert again["cik"] == new  # the old CIK is never handed out again
    gw.wait_for(
        r"WARNING .*node SN-RG: Exosite refuses the CIK "
        r"\(HTTP 401; the vendor API has the serial activated\)"
    )
    shown = json.loads(gw.ctl("show", "SN-RG", "--reveal", "--json").stdout)
    assert shown["cik"] == new
    assert old not in gw.log_text()


def test_a_regenerated_cik_without_auto_reenable_waits_for_the_operator(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode, broker: Broker
) -> None:
    gw, old = activated(tmp_path, registry, gateway, node, "SN-RH", timeout=2)
    gw.rewrite(nodes={"rejected_retry_after": 0})
    registry.regenerate(VENDOR, MODEL, "SN-RH")
    answer = rr(broker, "SN-RH", REJECTED)
    assert (answer["status"], answer["reason"]) == ("rejected", "cik_revoked")
    assert "revoked" in str(answer["message"])
    listed = json.loads(gw.ctl("list", "--json").stdout)
    assert [(r["sn"], r["state"]) for r in listed] == [("SN-RH", "needs_reenable")]
    assert gw.ctl("reenable", "SN-RH").returncode == 0  # the operator, by hand
    gw.send(1)  # SIGHUP: rejected_retry_after = 0 from now on
    gw.wait_for("configuration reloaded")
    answer = rr(broker, "SN-RH", "{}")
    assert answer["status"] == "activated"
    assert answer["cik"] != old
    assert accepted(registry, answer["cik"])
    assert registry.issued() == [("SN-RH", old), ("SN-RH", answer["cik"])]


class Fleet:
    """One MQTT client announcing for many serials and hearing every answer."""

    def __init__(self, broker: Broker) -> None:
        self.answers: dict[str, dict[str, object]] = {}
        self._done = threading.Condition()
        self.client = new_client("lifecycle-fleet")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("gatewayd/nodes/+/credentials", qos=1)
        assert subscribed.wait(WAIT)

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:
        body = json.loads(message.payload)
        if body["status"] in {"activated", "rejected"}:
            with self._done:
                self.answers.setdefault(str(body["sn"]), body)  # the first final answer
                self._done.notify_all()

    def announce(self, sn: str, payload: dict[str, object]) -> None:
        self.client.publish(f"gatewayd/nodes/{sn}/announce", json.dumps(payload), qos=1)

    def wait(self, count: int) -> bool:
        with self._done:
            return self._done.wait_for(lambda: len(self.answers) >= count, WAIT)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def with_token(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, **nodes: object
) -> Gateway:
    """A gateway with the vendor token, not started."""
    token = tmp_path / "vendor-token"
    token.write_text(TOKEN + "\n")
    registry.set_vendor_token(TOKEN)
    return gateway(exosite={"vendor_token_file": str(token)}, nodes=nodes)


def test_a_new_gateway_adopts_the_ciks_its_nodes_hold(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, broker: Broker
) -> None:
    serials = [f"SN-AD{i:03d}" for i in range(200)]
    held = {}
    for sn in [*serials, "SN-WRONG"]:
        registry.add(VENDOR, MODEL, sn)
        answer = registry.activate((VENDOR, MODEL), sn)  # by the gateway that died
        assert answer.cik is not None
        held[sn] = answer.cik.reveal()
    requests = registry.total_calls()
    gw = with_token(tmp_path, registry, gateway)  # an empty state folder
    gw.start()
    fleet = Fleet(broker)
    try:
        for sn in serials:
            fleet.announce(sn, {"cik": held[sn]})
        for sn in serials[-20:]:  # impatient nodes: again, before the verdict on their CIK
            fleet.announce(sn, {})
        assert fleet.wait(len(serials)), f"{len(fleet.answers)} of {len(serials)} answered"
    finally:
        fleet.close()
    for sn in serials:
        body = fleet.answers[sn]
        assert (body["status"], body["cik"], body.get("adopted")) == ("activated", held[sn], True)
    assert sum(registry.lookups(sn) for sn in serials) == len(serials)
    assert sum(registry.manage_calls(sn) for sn in serials) == len(serials)  # whose: the rid
    assert registry.total_calls() == requests  # no activation request at all
    wrong = rr(broker, "SN-WRONG", json.dumps({"cik": "f" * 40}))
    assert (wrong["status"], wrong.get("cik"), wrong.get("adopted")) == ("rejected", None, None)
    shown = json.loads(gw.ctl("show", "SN-WRONG", "--reveal", "--json").stdout)
    assert shown.get("cik") is None
    listed = json.loads(gw.ctl("list", "--json").stdout)
    assert sum(r["state"] == "activated" for r in listed) == len(serials)
    assert not any(cik in gw.log_text() for cik in held.values())


def test_a_rotation_delivers_a_new_cik_to_a_connected_node(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    gw, old = activated(tmp_path, registry, gateway, node, "SN-RO")
    n = node("SN-RO")  # connected, subscribed to its credentials, announcing nothing
    done = gw.ctl("rotate", "SN-RO")
    assert done.returncode == 0, done.stderr
    assert "rotation started" in done.stdout
    answer = n.next_answer(WAIT)
    assert answer.topic == n.credentials_topic
    assert answer.body["status"] == "activated"
    new = answer.body["cik"]
    assert new != old
    assert accepted(registry, new)
    assert not accepted(registry, old)
    gw.wait_for(r"INFO .*node SN-RO: credentials rotated")
    listed = json.loads(gw.ctl("list", "--json").stdout)
    assert [(r["sn"], r["state"], r["reason"]) for r in listed] == [("SN-RO", "activated", None)]
    assert registry.manage_calls("SN-RO") == 1


def test_a_rotation_without_a_vendor_token_is_refused(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-RN")
    gw = gateway()
    gw.start()
    assert node("SN-RN").activate(timeout=WAIT)["status"] == "activated"
    done = gw.ctl("rotate", "SN-RN")
    assert done.returncode == 1
    assert "a rotation needs the vendor token" in done.stderr
    assert gw.ctl("rotate", "SN-NONE").returncode == 1


def test_a_node_s_own_cik_replaces_a_stored_one_only_once_exosite_refuses_the_stored(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode, broker: Broker
) -> None:
    gw, stored = activated(tmp_path, registry, gateway, node, "SN-OWN")
    offered = json.dumps({"cik": "c" * 40})  # a CIK Exosite never issued
    answer = rr(broker, "SN-OWN", offered)  # the stored one is accepted: it stays
    assert (answer["cik"], answer.get("adopted")) == (stored, None)
    assert registry.lookups("SN-OWN") == 1
    gw.rewrite(nodes={"check_interval": 0.001})
    gw.send(1)  # SIGHUP
    gw.wait_for("configuration reloaded")
    current = registry.regenerate(VENDOR, MODEL, "SN-OWN").reveal()  # the node got it elsewhere
    answer = rr(broker, "SN-OWN", json.dumps({"cik": current}))
    assert (answer["status"], answer["cik"], answer.get("adopted")) == ("activated", current, True)
    assert registry.total_calls() == 1  # no new activation: the first one only
    again = rr(broker, "SN-OWN", "{}")
    assert again["cik"] == current


def test_a_rotation_whose_re_enable_times_out_never_goes_back_to_the_old_cik(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode, broker: Broker
) -> None:
    """Exosite re-enables the serial, but its answer comes after [exosite] timeout: the old
    CIK is dead, and gatewayd must not hand it out again."""
    gw, old = activated(tmp_path, registry, gateway, node, "SN-RT", timeout=1)
    registry.set_latency("SN-RT", 2.5)  # the vendor API answers after gatewayd gave up
    assert gw.ctl("rotate", "SN-RT").returncode == 0
    gw.wait_for(r"ERROR .*node SN-RT: rotation: re-enabling the serial may have been carried out")
    assert not accepted(registry, old)  # Exosite did re-enable it
    during = rr(broker, "SN-RT", "{}")
    assert (during["status"], during.get("cik")) == ("pending", None)
    registry.set_latency("SN-RT", 0)
    gw.wait_for(r"INFO .*node SN-RT: credentials rotated")
    answer = rr(broker, "SN-RT", "{}")
    assert answer["status"] == "activated"
    assert answer["cik"] != old
    assert accepted(registry, answer["cik"])
    listed = json.loads(gw.ctl("list", "--json").stdout)
    assert [(r["sn"], r["state"]) for r in listed] == [("SN-RT", "activated")]


@pytest.mark.parametrize("auto", [True, False])
def test_an_activated_node_whose_cik_was_retired_with_none_stored_is_recovered_at_start(
    tmp_path: Path,
    registry: Registry,
    gateway: MakeGateway,
    auto: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop between the retire of a refused CIK and the record saying so (by an earlier
    gatewayd) left the node activated with no CIK: at start it is re-enabled with
    auto_reenable, else it needs re-enabling, before it announces."""
    token = tmp_path / "vendor-token"
    token.write_text(TOKEN + "\n")
    registry.set_vendor_token(TOKEN)
    registry.add(VENDOR, MODEL, "SN-RS")
    old = registry.activate((VENDOR, MODEL), "SN-RS").cik
    assert old is not None
    gw = gateway(exosite={"vendor_token_file": str(token), "auto_reenable": auto})
    monkeypatch.syspath_prepend(str(THIRD_PARTY))  # the third-party backend, as gatewayd has it
    monkeypatch.setenv("XDG_DATA_HOME", gw.env["XDG_DATA_HOME"])
    with StateDB.in_dir(gw.state_dir) as db:
        db.save(Node("SN-RS", VENDOR, MODEL, State.ACTIVATED, time.time() - 60))
    keystore = open_keystore(load(gw.config_path))
    keystore.store(VENDOR, MODEL, "SN-RS", old)
    keystore.retire(VENDOR, MODEL, "SN-RS")
    registry.regenerate(VENDOR, MODEL, "SN-RS")  # why it was retired
    gw.start()
    if auto:
        gw.wait_for(r"INFO .*node SN-RS: credentials activated|INFO .*node SN-RS: activated")
        shown = json.loads(gw.ctl("show", "SN-RS", "--reveal", "--json").stdout)
        assert shown["state"] == "activated"
        assert accepted(registry, shown["cik"])
        assert registry.manage_calls("SN-RS") == 1  # the re-enable
    else:
        gw.wait_for(r"node SN-RS: .*revoked")
        listed = json.loads(gw.ctl("list", "--json").stdout)
        assert [(r["sn"], r["state"]) for r in listed] == [("SN-RS", "needs_reenable")]
