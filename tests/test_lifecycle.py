"""A CIK's life after its activation, end to end: gatewayd as a subprocess, mosquitto, the
simulator. The node side is played by gatewayd's simulated node for the first
activation and by ``mosquitto_rr`` (an MQTT 5 request with a response topic) for
the announces that say Exosite refuses the node's CIK (``"cik_rejected": true``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway

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
    assert registry.checks("SN-OK") == 1
    second = rr(broker, "SN-OK", REJECTED)  # within check_interval: from the keystore
    assert (second["status"], second["cik"], second.get("checked")) == ("activated", cik, None)
    assert registry.checks("SN-OK") == 1
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
    assert registry.manage_calls("SN-RG") == 1  # the re-enable
    again = rr(broker, "SN-RG", "{}")
    assert again["cik"] == new  # the old CIK is never handed out again
    gw.wait_for(r"WARNING .*node SN-RG: Exosite refuses the CIK \(HTTP 401\)")
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
    assert not any(cik == old for sn, cik in registry.issued()[1:])
