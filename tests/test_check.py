"""Checking a CIK with Exosite: the simulator's ``GET /onep:v1/stack/alias`` and
``gatewayctl check SN``.

A CIK is accepted while it is its device's current one; re-enabling the device
through the vendor API, or regenerating its CIK, makes the old one refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR

from gatewayd.adapters import cikcheck
from gatewayd.adapters.http import Client
from gatewayd.adapters.state import StateDB
from gatewayd.config.load import load
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import Verdict
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret
from gatewayd.ctl.main import main
from gatewayd.daemon.wiring import open_keystore
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.model import Call

pytestmark = pytest.mark.http

TOKEN = "vendor-token-5c1e"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    registry = Registry(vendor_token=TOKEN)
    registry.add(VENDOR, MODEL, "SN-1")
    with Simulator(registry) as simulator:
        yield simulator


def activate(sim: Simulator, sn: str = "SN-1") -> Secret:
    answer = sim.registry.activate((VENDOR, MODEL), sn)
    assert answer.cik is not None
    return answer.cik


def exosite(sim: Simulator) -> ExositeConfig:
    return ExositeConfig(url=sim.url, vendor=VENDOR, model=MODEL, timeout=2.0)


def asked(sim: Simulator, cik: Secret) -> tuple[Verdict, str]:
    client = Client()
    try:
        return cikcheck.check(client, exosite(sim), cik)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.ACCEPTED),
        (204, Verdict.ACCEPTED),
        (401, Verdict.REFUSED),
        (403, Verdict.REFUSED),
        (404, Verdict.UNKNOWN),
        (429, Verdict.UNKNOWN),
        (500, Verdict.UNKNOWN),
        (503, Verdict.UNKNOWN),
    ],
)
def test_what_each_answer_means(status: int, verdict: Verdict) -> None:
    assert cikcheck.verdict(status) is verdict


def test_a_current_cik_is_accepted_and_a_stranger_refused(sim: Simulator) -> None:
    cik = activate(sim)
    assert asked(sim, cik) == (Verdict.ACCEPTED, "HTTP 200")
    assert asked(sim, Secret("f" * 40)) == (Verdict.REFUSED, "HTTP 401")
    assert sim.registry.checks("SN-1") == 1
    calls = [(e.sn, e.status) for e in sim.registry.request_log() if e.call is Call.CHECK]
    assert calls == [("SN-1", 200), ("", 401)]
    assert sim.registry.calls("SN-1") == 1  # a check is no activation


def test_re_enabling_or_regenerating_makes_the_old_cik_refused(sim: Simulator) -> None:
    first = activate(sim)
    sim.registry.regenerate(VENDOR, MODEL, "SN-1")
    assert asked(sim, first)[0] is Verdict.REFUSED
    assert sim.registry.device(VENDOR, MODEL, "SN-1").state == "activated"
    sim.registry.manage(Call.REENABLE, MODEL, "SN-1", TOKEN)
    second = activate(sim)
    assert asked(sim, second)[0] is Verdict.ACCEPTED
    sim.registry.manage(Call.REENABLE, MODEL, "SN-1", TOKEN)
    assert asked(sim, second)[0] is Verdict.REFUSED


def test_no_clean_answer_decides_nothing(sim: Simulator) -> None:
    cik = activate(sim)
    sim.registry.error_rate = 1.0
    assert asked(sim, cik) == (Verdict.UNKNOWN, "HTTP 503")
    sim.registry.error_rate = 0.0
    sim.registry.drop_rate = 1.0
    verdict, said = asked(sim, cik)
    assert verdict is Verdict.UNKNOWN
    assert said.startswith("connection error")


# ----------------------------------------------------------------- gatewayctl


def configured(tmp_path: Path, sim: Simulator, cik: Secret | None) -> str:
    """A gateway's configuration, with SN-1's record and (unless None) its CIK stored."""
    state_dir = tmp_path / "state"
    path = tmp_path / "config.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{state_dir}"\n'
        f'[exosite]\nurl = "{sim.url}"\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\ntimeout = 2\n'
    )
    with StateDB.in_dir(state_dir) as db:
        db.save(Node("SN-1", VENDOR, MODEL, State.ACTIVATED, 1_700_000_000.0))
    if cik is not None:
        open_keystore(load(path)).store(VENDOR, MODEL, "SN-1", cik)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gatewayctl_check_tells_the_verdict(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cik = activate(sim)
    path = configured(tmp_path, sim, cik)
    code, out, err = run(capsys, "--config", path, "check", "SN-1")
    assert (code, err) == (0, "")
    assert out == "SN-1: Exosite accepts its CIK (HTTP 200)\n"
    sim.registry.regenerate(VENDOR, MODEL, "SN-1")
    code, out, _ = run(capsys, "--config", path, "check", "SN-1", "--json")
    assert code == 1
    assert json.loads(out) == {
        "sn": "SN-1",
        "model": MODEL,
        "verdict": "refused",
        "answer": "HTTP 401",
    }
    assert cik.reveal() not in out


def test_gatewayctl_check_without_a_cik_or_a_node(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configured(tmp_path, sim, None)
    assert run(capsys, "--config", path, "check", "SN-1") == (
        1,
        "",
        "gatewayctl: SN-1: no CIK is stored for it\n",
    )
    assert run(capsys, "--config", path, "check", "SN-9") == (
        1,
        "",
        "gatewayctl: SN-9: no such node\n",
    )
    assert sim.registry.checks("SN-1") == 0
