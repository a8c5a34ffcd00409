"""What gatewayd believes of a CIK a node offers or says is refused, end to end: gatewayd
as a subprocess, mosquitto, the simulator, ``mosquitto_rr`` as the node.

A CIK is adopted only once Exosite proves it is the serial's own (its rid is the
serial's); it is retired only on Exosite's own refusal; a proxy's answer is no
verdict; a junk offer holds back nothing; a storm of offers makes few checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway
from test_check import FilteringProxy
from test_lifecycle import REJECTED, Fleet, accepted, rr, with_token

from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]


def issued_elsewhere(registry: Registry, sn: str) -> str:
    """``sn`` activated by another gateway: the CIK its node holds."""
    registry.add(VENDOR, MODEL, sn)
    answer = registry.activate((VENDOR, MODEL), sn)
    assert answer.cik is not None
    return answer.cik.reveal()


def stored(gw: Gateway, sn: str) -> object:
    return json.loads(gw.ctl("show", sn, "--reveal", "--json").stdout).get("cik")


def test_a_cik_of_another_device_is_never_adopted_as_the_serials(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, broker: Broker
) -> None:
    cik_a = issued_elsewhere(registry, "SN-A")
    registry.add(VENDOR, MODEL, "SN-B")  # known to Exosite, never activated
    gw = with_token(tmp_path, registry, gateway)
    gw.start()
    answer = rr(broker, "SN-B", json.dumps({"cik": cik_a}))
    # B is activated with a CIK of its own, never A's
    assert answer["status"] == "activated"
    assert (answer.get("adopted"), answer["cik"] == cik_a) == (None, False)
    assert registry.calls("SN-B") == 1
    assert accepted(registry, answer["cik"])
    assert registry.device(VENDOR, MODEL, "SN-B").state == "activated"
    assert stored(gw, "SN-B") == answer["cik"]
    gw.wait_for(
        r"WARNING .*node SN-B: the CIK the node offered is not adopted: HTTP 200; "
        r"the CIK is another device's"
    )
    # the real B, announcing later, gets B's own CIK
    again = rr(broker, "SN-B", "{}")
    assert again["cik"] == answer["cik"]
    assert accepted(registry, cik_a)  # A's CIK untouched


def test_a_refused_cik_is_never_replaced_by_another_devices(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, broker: Broker, node: MakeNode
) -> None:
    cik_a = issued_elsewhere(registry, "SN-A2")
    registry.add(VENDOR, MODEL, "SN-C")
    gw = with_token(tmp_path, registry, gateway)
    gw.start()
    old = node("SN-C").activate(timeout=WAIT)["cik"]
    registry.regenerate(VENDOR, MODEL, "SN-C")  # C's stored CIK is now refused
    answer = rr(broker, "SN-C", json.dumps({"cik_rejected": True, "cik": cik_a}))
    assert answer.get("cik") not in {cik_a, old}
    assert (answer["status"], answer["reason"]) == ("rejected", "cik_revoked")
    assert stored(gw, "SN-C") is None


def test_without_a_vendor_token_an_offered_cik_is_ignored(
    registry: Registry, gateway: MakeGateway, broker: Broker
) -> None:
    held = issued_elsewhere(registry, "SN-H")
    gw = gateway()
    gw.start()
    gw.wait_for(r"no vendor token: a CIK a node offers is never adopted")
    answer = rr(broker, "SN-H", json.dumps({"cik": held}))
    # answered as an announce without "cik": Exosite says the serial is activated already
    assert (answer["status"], answer["reason"]) == ("rejected", "not_activatable")
    assert registry.lookups("SN-H") == 0
    assert stored(gw, "SN-H") is None


def test_a_junk_offer_does_not_hold_back_the_nodes_own_cik(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, broker: Broker
) -> None:
    own = issued_elsewhere(registry, "SN-J")
    gw = with_token(tmp_path, registry, gateway, check_interval=300)
    gw.start()
    junk = rr(broker, "SN-J", json.dumps({"cik": "0" * 40}))
    assert (junk["status"], junk["reason"]) == ("rejected", "not_activatable")
    answer = rr(broker, "SN-J", json.dumps({"cik": own}))  # well within check_interval
    assert (answer["status"], answer["cik"], answer.get("adopted")) == ("activated", own, True)
    assert registry.calls("SN-J") == 2  # the first activation, and gatewayd's one 409


@pytest.fixture
def blocked_onep(tmp_path: Path) -> Iterator[FilteringProxy]:
    proxy = FilteringProxy(tmp_path, "onep:v1")
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_proxys_403_never_retires_a_good_cik(
    tmp_path: Path,
    registry: Registry,
    gateway: MakeGateway,
    broker: Broker,
    node: MakeNode,
    blocked_onep: FilteringProxy,
) -> None:
    registry.add(VENDOR, MODEL, "SN-P")
    gw = with_token(tmp_path, registry, gateway, check_interval=0.001)
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        gw.env.pop(name, None)
    gw.env["http_proxy"] = blocked_onep.url  # activation passes, the device API is blocked
    gw.start()
    cik = node("SN-P").activate(timeout=WAIT)["cik"]
    for _ in range(3):
        answer = rr(broker, "SN-P", REJECTED)
        assert (answer["status"], answer["cik"], answer.get("checked")) == ("activated", cik, None)
    gw.wait_for(r"WARNING .*node SN-P: CIK check: no verdict from Exosite \(HTTP 403")
    assert accepted(registry, cik)
    assert stored(gw, "SN-P") == cik
    listed = json.loads(gw.ctl("list", "--json").stdout)
    assert [(r["sn"], r["state"], r["reason"]) for r in listed] == [("SN-P", "activated", None)]
    assert registry.lookups("SN-P") == 0  # none of it reached Exosite
    assert registry.calls("SN-P") == 1


class Answered(Fleet):
    """Every serial answered, whatever the answer."""

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:
        body = json.loads(message.payload)
        with self._done:
            self.answers.setdefault(str(body["sn"]), body)
            self._done.notify_all()


def test_a_storm_of_offers_makes_few_checks(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, broker: Broker
) -> None:
    gw = with_token(tmp_path, registry, gateway, max_pending=5)
    gw.start()
    registry.set_latency("", 4.0)  # a check of a CIK that is nobody's takes 4 s
    fleet = Answered(broker)
    try:
        for i in range(300):  # made-up serials, each offering a random CIK
            fleet.announce(f"MADE-UP-{i}", {"cik": f"{i:040x}"})
        assert fleet.wait(300), f"{len(fleet.answers)} of 300 answered"
    finally:
        fleet.close()
    checks = registry.lookups("")  # CIKs that are nobody's count under ""
    # 5 under way at once; the burst is all answered before the first verdicts
    assert 5 <= checks <= 10
    busy = sum(body["status"] == "pending" for body in fleet.answers.values())
    assert busy >= 300 - checks
