"""Checking a CIK with Exosite: whether it accepts it (the One Platform RPC ``lookup`` of
the CIK's own rid), and whose it is (that rid against the serial's, from the vendor
API); ``gatewayctl check SN``.

A CIK is accepted while it is its device's current one; re-enabling the device
through the vendor API, or regenerating its CIK, makes the old one refused. Only
Exosite's own answers decide: a proxy's 403, a 5xx or a dropped connection is no
verdict.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT

from gatewayd.adapters import cikcheck
from gatewayd.adapters.exosite import ExositeClient
from gatewayd.adapters.http import Client
from gatewayd.adapters.statedb import StateDB
from gatewayd.adapters.vendor import VendorClient
from gatewayd.config.load import load
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import ActivationAnswered, CikChecked, Verdict
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret
from gatewayd.ctl.main import main
from gatewayd.daemon.wiring import open_keystore
from gatewayd.sim import Registry, Response, Route, Simulator
from gatewayd.sim.model import Call
from gatewayd.sim.processes import Output, free_port

pytestmark = pytest.mark.http

TOKEN = "vendor-token-5c1e"
RID = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    registry = Registry(vendor_token=TOKEN)
    registry.add(VENDOR, MODEL, "SN-1")
    registry.add(VENDOR, MODEL, "SN-2")
    with Simulator(registry) as simulator:
        yield simulator


def activate(sim: Simulator, sn: str = "SN-1") -> Secret:
    answer = sim.registry.activate((VENDOR, MODEL), sn)
    assert answer.cik is not None
    return answer.cik


def exosite(sim: Simulator) -> ExositeConfig:
    return ExositeConfig(url=sim.url, vendor=VENDOR, model=MODEL, timeout=2.0)


def asked(
    sim: Simulator, cik: Secret, sn: str = "SN-1", *, vendor: bool = False, owner: bool = False
) -> tuple[Verdict, str]:
    config = exosite(sim)
    client = Client()
    api = VendorClient(config, Secret(TOKEN)) if vendor else None
    try:
        return cikcheck.check(client, config, cik, sn=sn, model=MODEL, vendor=api, owner=owner)
    finally:
        client.close()


def rpc(*calls: object) -> bytes:
    return json.dumps(list(calls)).encode()


@pytest.mark.parametrize(
    ("status", "body", "found"),
    [
        (200, rpc({"id": 1, "status": "ok", "result": RID}), RID),
        (200, rpc({"id": 1, "status": "ok", "result": RID.upper()}), RID),
        (401, b"", Verdict.REFUSED),
        (401, b"<html>Unauthorized</html>", Verdict.REFUSED),
        (
            200,
            b'{"error": {"code": 401, "message": "Unauthorized", "context": "auth"}}',
            Verdict.REFUSED,
        ),
        (200, b'{"error": {"code": 400, "message": "Bad", "context": "calls"}}', Verdict.UNKNOWN),
        (403, b"<html>Filtered</html>", Verdict.UNKNOWN),
        (407, b"", Verdict.UNKNOWN),
        (404, b"", Verdict.UNKNOWN),
        (429, b"", Verdict.UNKNOWN),
        (500, b"", Verdict.UNKNOWN),
        (503, b"", Verdict.UNKNOWN),
        (200, b"<html>Sign in to continue</html>", Verdict.UNKNOWN),
        (200, b"", Verdict.UNKNOWN),
        (200, rpc({"id": 1, "status": "invalid"}), Verdict.UNKNOWN),
        (200, rpc({"id": 2, "status": "ok", "result": RID}), Verdict.UNKNOWN),
        (200, rpc({"id": 1, "status": "ok", "result": "not-a-rid"}), Verdict.UNKNOWN),
        (200, rpc({"id": 1, "status": "ok", "result": RID}, {"id": 1}), Verdict.UNKNOWN),
        (204, b"", Verdict.UNKNOWN),
    ],
)
def test_what_each_answer_to_a_lookup_means(status: int, body: bytes, found: object) -> None:
    assert cikcheck.read_lookup(status, body) == found


def test_a_current_cik_is_accepted_and_a_stranger_refused(sim: Simulator) -> None:
    cik = activate(sim)
    assert asked(sim, cik) == (Verdict.ACCEPTED, "HTTP 200")
    assert asked(sim, Secret("f" * 40)) == (Verdict.REFUSED, "HTTP 401")
    assert sim.registry.lookups("SN-1") == 1
    calls = [(e.sn, e.status) for e in sim.registry.request_log() if e.call is Call.LOOKUP]
    assert calls == [("SN-1", 200), ("", 401)]
    assert sim.registry.calls("SN-1") == 1  # a check is no activation
    assert sim.registry.total_manage_calls() == 0  # no vendor API without a token


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


def test_with_a_vendor_token_a_refusal_counts_once_the_vendor_api_answers(
    sim: Simulator,
) -> None:
    cik = activate(sim)
    assert asked(sim, cik, vendor=True) == (Verdict.ACCEPTED, "HTTP 200")
    assert sim.registry.manage_calls("SN-1") == 0  # an accepted CIK needs no more
    sim.registry.regenerate(VENDOR, MODEL, "SN-1")
    verdict, said = asked(sim, cik, vendor=True)
    assert (verdict, said) == (Verdict.REFUSED, "HTTP 401; the vendor API has the serial activated")
    sim.registry.manage(Call.REENABLE, MODEL, "SN-1", TOKEN)
    verdict, said = asked(sim, cik, vendor=True)
    assert (verdict, said) == (
        Verdict.REFUSED,
        "HTTP 401; the vendor API has the serial notactivated",
    )
    sim.registry.set_vendor_token("another-token")  # the vendor API refuses ours: unconfirmed
    verdict, said = asked(sim, cik, vendor=True)
    assert verdict is Verdict.UNKNOWN
    assert said.startswith("HTTP 401; the vendor API did not answer: the vendor token was refused")


def test_a_cik_is_the_serials_own_only_when_its_rid_is_the_serials(sim: Simulator) -> None:
    own, other = activate(sim, "SN-1"), activate(sim, "SN-2")
    assert asked(sim, own, vendor=True, owner=True) == (
        Verdict.ACCEPTED,
        "HTTP 200; the CIK's rid is the serial's",
    )
    # SN-2's CIK is valid, but not SN-1's: never adopted as SN-1's
    assert asked(sim, other, vendor=True, owner=True) == (
        Verdict.REFUSED,
        "HTTP 200; the CIK is another device's (its rid is not the serial's)",
    )
    assert asked(sim, other, "SN-UNKNOWN", vendor=True, owner=True) == (
        Verdict.REFUSED,
        "HTTP 200; the vendor API does not know the serial (HTTP 404)",
    )
    assert asked(sim, Secret("e" * 40), vendor=True, owner=True) == (Verdict.REFUSED, "HTTP 401")
    # without a vendor token nothing proves whose a CIK is
    assert asked(sim, own, owner=True) == (
        Verdict.UNKNOWN,
        "no vendor token: whose CIK it is cannot be proved",
    )


def test_no_clean_answer_decides_nothing(sim: Simulator) -> None:
    cik = activate(sim)
    sim.registry.error_rate = 1.0
    assert asked(sim, cik) == (Verdict.UNKNOWN, "HTTP 503")
    sim.registry.error_rate = 0.0
    sim.registry.drop_rate = 1.0
    verdict, said = asked(sim, cik)
    assert verdict is Verdict.UNKNOWN
    assert said.startswith("connection error")


class FilteringProxy:
    """A tinyproxy that answers 403 to every URL matching ``pattern``, as an office's
    proxy does for what it blocks."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self.port = free_port()
        (folder / "filter").write_text(pattern + "\n")
        conf = folder / "tinyproxy.conf"
        conf.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nMaxClients 8\n"
            f'Allow 127.0.0.1\nFilter "{folder / "filter"}"\nFilterURLs On\n'
        )
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        self._process = subprocess.Popen(
            [binary, "-d", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._log = Output("tinyproxy", self._process.stdout, folder / "tinyproxy.log")
        self._log.wait_for(r"Accepting connections")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._log.close()


@pytest.fixture
def blocking_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FilteringProxy]:
    """http_proxy set to a proxy that blocks the One Platform's device API with 403."""
    proxy = FilteringProxy(tmp_path, "onep:v1")
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_proxys_403_is_no_refusal(sim: Simulator, blocking_proxy: FilteringProxy) -> None:
    cik = activate(sim)
    for vendor, owner in ((False, False), (True, False), (True, True)):
        verdict, said = asked(sim, cik, vendor=vendor, owner=owner)
        assert verdict is Verdict.UNKNOWN
        assert said.startswith("HTTP 403")
    assert sim.registry.lookups("SN-1") == 0  # blocked on the way


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


def test_checks_wait_behind_activations(sim: Simulator) -> None:
    """One worker: while it checks a CIK, three more checks and an activation queue up;
    the activation is sent before the checks queued ahead of it."""
    sim.registry.set_latency("", 0.3)  # a check of a CIK that is nobody's takes a while
    order: list[str] = []
    done = threading.Event()

    def deliver(answer: ActivationAnswered | CikChecked) -> None:
        order.append(type(answer).__name__)
        if isinstance(answer, ActivationAnswered):
            client.handled(answer)
        if len(order) == 4:
            done.set()

    config = dataclasses.replace(exosite(sim), max_concurrent=1, max_rate=1000.0)
    client = ExositeClient(config, deliver)
    try:
        for i in range(3):
            client.check(f"SN-X{i}", MODEL, Secret(f"{i:040x}"), owner=False)
        client.submit("SN-1", VENDOR, MODEL)
        assert done.wait(WAIT)
    finally:
        client.close(timeout=WAIT)
    assert order.index("ActivationAnswered") <= 1, order


def test_a_bare_401_for_a_serial_still_activated_is_no_refusal(sim: Simulator) -> None:
    """A 401 that is not the RPC's own JSON could be a proxy's: with a vendor token, it
    counts only if the vendor API has the serial re-enabled or expired."""
    cik = activate(sim)
    bare = Route("POST", re.compile(re.escape(cikcheck.RPC_PATH)), lambda _r: Response.text(401))
    sim.routes = (bare, *sim.routes)
    verdict, said = asked(sim, cik, vendor=True)
    assert verdict is Verdict.UNKNOWN
    assert (
        said == "HTTP 401, not in the RPC's own words, and the vendor API has the serial activated"
    )
    assert asked(sim, cik) == (Verdict.REFUSED, "HTTP 401")  # without a token, Exosite's 401
    sim.registry.manage(Call.REENABLE, MODEL, "SN-1", TOKEN)
    assert asked(sim, cik, vendor=True) == (
        Verdict.REFUSED,
        "HTTP 401; the vendor API has the serial notactivated",
    )
