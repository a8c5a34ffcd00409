"""The simulator as a device's Exosite, over real HTTP on 127.0.0.1: the One Platform
RPC lookup that tells whose a CIK is."""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING

import pytest
import requests
from conftest import FakeClock

from gatewayd.sim import DROP, Call, LogEntry, Registry, Simulator, State, device_rid

if TYPE_CHECKING:
    from collections.abc import Iterator

VENDOR = "acme"
MODEL = "thermo-v1"
TOKEN = "5f0c9e2b7a14d3c8e6f1a2b3c4d5e6f708192a3b"
TIMEOUT = 5.0
RPC = "/onep:v1/rpc/process"
JSON_UTF8 = "application/json; charset=utf-8"
LOOKUP_SELF = {"id": 1, "procedure": "lookup", "arguments": ["alias", ""]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    registry = Registry(clock=clock, rng=random.Random(7), vendor_token=TOKEN)  # noqa: S311 (faults, not secrets)
    registry.add(VENDOR, MODEL, "ABC123")
    registry.add(VENDOR, MODEL, "DEF456")
    return registry


@pytest.fixture
def sim(registry: Registry) -> Iterator[Simulator]:
    with Simulator(registry) as sim:
        yield sim


def activate(sim: Simulator, sn: str) -> str:
    data = {"vendor": VENDOR, "model": MODEL, "sn": sn}
    response = requests.post(f"{sim.url}/provision/activate", data=data, timeout=TIMEOUT)
    assert response.status_code == 200
    return response.text


def manage_rid(sim: Simulator, sn: str) -> str:
    """The serial's rid as the vendor API's status answer gives it."""
    url = f"{sim.url}/provision/manage/model/{MODEL}/{sn}"
    response = requests.get(url, headers={"X-Exosite-Token": TOKEN}, timeout=TIMEOUT)
    assert response.status_code == 200
    _status, rid, _extra = response.text.split(",")
    return rid


def rpc(sim: Simulator, cik: str, *calls: dict[str, object]) -> requests.Response:
    body = {"auth": {"cik": cik}, "calls": list(calls) or [LOOKUP_SELF]}
    return rpc_raw(sim, json.dumps(body).encode())


def rpc_raw(sim: Simulator, body: bytes, content_type: str = JSON_UTF8) -> requests.Response:
    headers = {"Content-Type": content_type}
    return requests.post(f"{sim.url}{RPC}", data=body, headers=headers, timeout=TIMEOUT)


def test_lookup_of_a_current_cik_answers_the_rid_of_the_manage_get(
    sim: Simulator, registry: Registry
) -> None:
    cik = activate(sim, "ABC123")
    response = rpc(sim, cik)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_UTF8
    rid = manage_rid(sim, "ABC123")
    assert response.json() == [{"id": 1, "status": "ok", "result": rid}]
    assert rid == device_rid(VENDOR, MODEL, "ABC123")
    assert registry.lookups("ABC123") == 1
    assert registry.checks("ABC123") == 0
    assert registry.request_log()[-2].call is Call.LOOKUP


def test_two_devices_have_different_rids(sim: Simulator) -> None:
    first = rpc(sim, activate(sim, "ABC123")).json()[0]["result"]
    second = rpc(sim, activate(sim, "DEF456")).json()[0]["result"]
    assert first != second
    assert (first, second) == (manage_rid(sim, "ABC123"), manage_rid(sim, "DEF456"))


def test_an_unknown_cik_is_refused_with_401(sim: Simulator, registry: Registry) -> None:
    response = rpc(sim, "0" * 40)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": "Invalid", "context": "auth"}}
    assert registry.lookups("") == 1


def test_after_a_reenable_the_old_cik_is_refused(sim: Simulator, registry: Registry) -> None:
    old = activate(sim, "ABC123")
    url = f"{sim.url}/provision/manage/model/{MODEL}/ABC123"
    headers = {"X-Exosite-Token": TOKEN}
    reenabled = requests.post(url, data={"enable": "true"}, headers=headers, timeout=TIMEOUT)
    assert reenabled.status_code == 205
    assert rpc(sim, old).status_code == 401
    new = activate(sim, "ABC123")
    assert rpc(sim, old).status_code == 401
    assert rpc(sim, new).json()[0]["result"] == manage_rid(sim, "ABC123")
    assert registry.lookups("ABC123") == 1
    assert registry.lookups("") == 2


def test_after_a_regenerate_the_old_cik_is_refused(sim: Simulator, registry: Registry) -> None:
    old = activate(sim, "ABC123")
    assert rpc(sim, old).status_code == 200
    body = {"vendor": VENDOR, "model": MODEL, "sn": "ABC123"}
    assert requests.post(f"{sim.url}/_sim/regenerate", json=body, timeout=TIMEOUT).ok
    assert rpc(sim, old).status_code == 401
    new = registry.regenerate(VENDOR, MODEL, "ABC123").reveal()
    assert rpc(sim, new).json()[0]["result"] == manage_rid(sim, "ABC123")
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.ACTIVATED


@pytest.mark.parametrize(
    ("body", "content_type", "code", "context"),
    [
        (b"{not json", JSON_UTF8, -1, None),
        (b"", JSON_UTF8, -1, None),
        (b'{"auth": {"cik": "x"}, "calls": [], "n": NaN}', JSON_UTF8, -1, None),
        (b"[" * 30_000 + b"]" * 30_000, JSON_UTF8, -1, None),
        (b"[1, 2]", JSON_UTF8, 400, None),
        (b'{"calls": []}', JSON_UTF8, 400, "auth"),
        (b'{"auth": "x", "calls": []}', JSON_UTF8, 400, "auth"),
        (b'{"auth": {"cik": 7}, "calls": []}', JSON_UTF8, 400, "auth"),
        (b'{"auth": {"cik": "x", "client_id": "y"}, "calls": []}', JSON_UTF8, 400, "auth"),
        (b'{"auth": {"cik": "x"}}', JSON_UTF8, 400, "calls"),
        (b'{"auth": {"cik": "x"}, "calls": {"id": 1}}', JSON_UTF8, 400, "calls"),
        (b'{"auth": {"cik": "x"}, "calls": [7]}', JSON_UTF8, 400, "calls"),
        (b'{"auth": {"cik": "x"}, "calls": [{"id": true}]}', JSON_UTF8, 400, "calls"),
        (
            b'{"auth": {"cik": "x"}, "calls": [{"id": "' + b"i" * 41 + b'"}]}',
            JSON_UTF8,
            400,
            "calls",
        ),
        (
            b'{"auth": {"cik": "x"}, "calls": [{"id": 1, "arguments": []}]}',
            JSON_UTF8,
            400,
            "procedure",
        ),
        (
            b'{"auth": {"cik": "x"}, "calls": [{"id": 1, "procedure": "lookup"}]}',
            JSON_UTF8,
            400,
            "arguments",
        ),
        (b'{"auth": {"cik": "x"}, "calls": []}', "text/plain", 400, None),
        (b"auth=x", "application/x-www-form-urlencoded", 400, None),
    ],
)
def test_a_body_that_is_no_rpc_request_answers_400(
    sim: Simulator,
    registry: Registry,
    body: bytes,
    content_type: str,
    code: int,
    context: str | None,
) -> None:
    cik = activate(sim, "ABC123")
    body = body.replace(b'"cik": "x"', f'"cik": "{cik}"'.encode())
    response = rpc_raw(sim, body, content_type)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == JSON_UTF8
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("context") == context
    assert registry.lookups("") == 1
    assert registry.lookups("ABC123") == 0
    assert registry.request_log()[-1] == LogEntry(
        registry.request_log()[-1].time, "", 400, Call.LOOKUP
    )


def test_other_procedures_and_arguments_are_answered_per_call(sim: Simulator) -> None:
    cik = activate(sim, "ABC123")
    rid = manage_rid(sim, "ABC123")
    other = "f" * 40
    calls: list[dict[str, object]] = [
        {"id": 1, "procedure": "read", "arguments": [{"alias": "temp"}, {}]},
        {"id": "two", "procedure": "lookup", "arguments": ["owner", rid]},
        {"id": 3, "procedure": "lookup", "arguments": ["alias"]},
        {"id": 4, "procedure": "lookup", "arguments": ["alias", "temp"]},
        {"id": 5, "procedure": "lookup", "arguments": [{"alias": ""}, "alias", ""]},
        {"id": 6, "procedure": "lookup", "arguments": [rid, "alias", ""]},
        {"id": 7, "procedure": "lookup", "arguments": [other, "alias", ""]},
        {"id": 8, "procedure": "lookup", "arguments": [{"alias": "child"}, "alias", ""]},
        {"id": 9, "procedure": "lookup", "arguments": [42, "alias", ""]},
        {"procedure": "lookup", "arguments": ["alias", ""]},
        {"id": 10.5, "procedure": "lookup", "arguments": ["alias", ""]},
    ]
    response = rpc(sim, cik, *calls)
    assert response.status_code == 200
    entries = response.json()
    assert [entry["id"] for entry in entries] == [1, "two", 3, 4, 5, 6, 7, 8, 9, 10.5]
    by_id = {entry["id"]: entry for entry in entries}
    assert by_id[1]["status"] == "fail"
    assert by_id[1]["error"]["code"] == 501
    assert by_id[1]["error"]["context"] == "procedure"
    for failed in ("two", 3, 9):
        assert by_id[failed]["status"] == "fail"
        assert by_id[failed]["error"]["context"] == "arguments"
    assert by_id[4] == {"id": 4, "status": "invalid"}
    assert by_id[8] == {"id": 8, "status": "invalid"}
    assert by_id[7] == {"id": 7, "status": "restricted"}
    for ok in (5, 6, 10.5):
        assert by_id[ok] == {"id": ok, "status": "ok", "result": rid}


def test_calls_without_an_id_get_no_answer(sim: Simulator, registry: Registry) -> None:
    cik = activate(sim, "ABC123")
    response = rpc(sim, cik, {"procedure": "lookup", "arguments": ["alias", ""]})
    assert (response.status_code, response.content) == (204, b"")
    assert registry.lookups("ABC123") == 1


def test_faults_and_latency_apply_to_lookups(sim: Simulator, registry: Registry) -> None:
    cik = activate(sim, "ABC123")
    registry.error_rate = 1.0
    assert rpc(sim, cik).status_code == 503
    assert rpc_raw(sim, b"{not json").status_code == 503
    registry.error_rate = 0.0
    registry.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        rpc(sim, cik)
    registry.drop_rate = 0.0
    registry.set_latency("ABC123", 30)
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{sim.url}{RPC}",
            json={"auth": {"cik": cik}, "calls": [LOOKUP_SELF]},
            timeout=0.3,
        )
    registry.set_latency("ABC123", 0)
    assert rpc(sim, cik).status_code == 200
    statuses = [(e.sn, e.status) for e in registry.request_log() if e.call is Call.LOOKUP]
    assert statuses == [
        ("ABC123", 503),
        ("", 503),
        ("ABC123", DROP),
        ("ABC123", 200),
        ("ABC123", 200),
    ]


def test_lookups_never_log_the_cik(
    sim: Simulator, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayd.sim")
    cik = activate(sim, "ABC123")
    rpc(sim, cik)
    rpc(sim, cik[::-1])
    rpc_raw(sim, json.dumps({"auth": {"cik": cik}, "calls": 3}).encode())
    assert "lookup sn='ABC123': 200" in caplog.text
    assert cik not in caplog.text
    assert cik[::-1] not in caplog.text
    assert registry.lookups("ABC123") == 1
