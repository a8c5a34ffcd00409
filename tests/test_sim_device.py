"""The simulator as a device's Exosite, over real HTTP on 127.0.0.1: the One Platform
RPC lookup that tells whose a CIK is, and the HTTP Data API a node writes, reads
and records its values with."""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING

import pytest
import requests
from conftest import FakeClock

from gatewayd.sim import DROP, Call, LogEntry, Registry, Simulator, State, device_rid
from gatewayd.sim.dataports import MAX_ALIASES, MAX_POINTS, MAX_VALUE_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

VENDOR = "acme"
MODEL = "thermo-v1"
TOKEN = "5f0c9e2b7a14d3c8e6f1a2b3c4d5e6f708192a3b"
TIMEOUT = 5.0
RPC = "/onep:v1/rpc/process"
JSON_UTF8 = "application/json; charset=utf-8"
LOOKUP_SELF = {"id": 1, "procedure": "lookup", "arguments": ["alias", ""]}
ALIAS = "/onep:v1/stack/alias"
RECORD = "/onep:v1/stack/record"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
MURANO = (VENDOR, "murano-p1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    registry = Registry(clock=clock, rng=random.Random(7), vendor_token=TOKEN)  # noqa: S311 (faults, not secrets)
    registry.add(VENDOR, MODEL, "ABC123")
    registry.add(VENDOR, MODEL, "DEF456")
    registry.add(*MURANO, "M-1")
    return registry


@pytest.fixture
def sim(registry: Registry) -> Iterator[Simulator]:
    with Simulator(registry, murano=MURANO) as sim:
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


# --------------------------------------------------------------- the data API


def write(
    sim: Simulator, cik: str | None, data: str | dict[str, str], query: str = ""
) -> requests.Response:
    headers = (
        {"Content-Type": FORM} if cik is None else {"Content-Type": FORM, "X-Exosite-CIK": cik}
    )
    url = f"{sim.url}{ALIAS}" + (f"?{query}" if query else "")
    return requests.post(url, data=data, headers=headers, timeout=TIMEOUT)


def read(sim: Simulator, cik: str | None, query: str) -> requests.Response:
    headers = {} if cik is None else {"X-Exosite-CIK": cik}
    headers["Accept"] = FORM
    url = f"{sim.url}{ALIAS}" + (f"?{query}" if query else "")
    return requests.get(url, headers=headers, timeout=TIMEOUT)


def record(sim: Simulator, cik: str | None, data: str) -> requests.Response:
    headers = (
        {"Content-Type": FORM} if cik is None else {"Content-Type": FORM, "X-Exosite-CIK": cik}
    )
    return requests.post(f"{sim.url}{RECORD}", data=data, headers=headers, timeout=TIMEOUT)


def test_a_write_is_read_back(sim: Simulator, registry: Registry, clock: FakeClock) -> None:
    cik = activate(sim, "ABC123")
    written = write(sim, cik, {"temp": "21.5", "note": "a b&c=d é"})
    assert (written.status_code, written.content) == (204, b"")
    answer = read(sim, cik, "note&temp")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == FORM
    assert answer.text == "note=a+b%26c%3Dd+%C3%A9&temp=21.5"
    assert read(sim, cik, "temp&nothing").text == "temp=21.5"
    assert registry.points(VENDOR, MODEL, "ABC123", "temp") == [(int(clock.now), "21.5")]
    clock.now += 5
    assert write(sim, cik, "temp=22").status_code == 204
    assert read(sim, cik, "temp").text == "temp=22"
    assert registry.data_calls("ABC123") == 5
    kinds = [e.call for e in registry.request_log() if e.sn == "ABC123"]
    assert kinds == [Call.ACTIVATE, Call.WRITE, Call.READ, Call.READ, Call.WRITE, Call.READ]


def test_an_empty_read_answers_204(sim: Simulator) -> None:
    cik = activate(sim, "ABC123")
    answer = read(sim, cik, "temp&hum")
    assert (answer.status_code, answer.content) == (204, b"")


def test_a_get_naming_no_alias_is_the_cik_check(sim: Simulator, registry: Registry) -> None:
    cik = activate(sim, "ABC123")
    assert write(sim, cik, "temp=1").status_code == 204
    for query in ("", "&"):
        answer = read(sim, cik, query)
        assert (answer.status_code, answer.content) == (200, b"")
    assert read(sim, "f" * 40, "").status_code == 401
    assert registry.checks("ABC123") == 2
    assert registry.data_calls("ABC123") == 1


def test_a_write_then_read_in_one_request(sim: Simulator) -> None:
    cik = activate(sim, "ABC123")
    answer = write(sim, cik, "temp=3&hum=40", query="hum&temp&hum")
    assert (answer.status_code, answer.text) == (200, "hum=40&temp=3")
    answer = write(sim, cik, "", query="hum")
    assert (answer.status_code, answer.text) == (200, "hum=40")
    assert write(sim, cik, "", query="other").status_code == 204


def test_each_device_has_its_own_values(sim: Simulator) -> None:
    first, second = activate(sim, "ABC123"), activate(sim, "DEF456")
    assert write(sim, first, "temp=1").status_code == 204
    assert write(sim, second, "temp=2").status_code == 204
    assert read(sim, first, "temp").text == "temp=1"
    assert read(sim, second, "temp").text == "temp=2"


def test_record_keeps_timestamped_values(
    sim: Simulator, registry: Registry, clock: FakeClock
) -> None:
    cik = activate(sim, "ABC123")
    now = int(clock.now)
    body = f"alias=temp&{now - 60}=20&{now - 120}=19&alias=hum&{now - 60}=40&alias=temp&{now}=21"
    answer = record(sim, cik, body)
    assert (answer.status_code, answer.content) == (204, b"")
    assert registry.points(VENDOR, MODEL, "ABC123", "temp") == [
        (now - 120, "19"),
        (now - 60, "20"),
        (now, "21"),
    ]
    assert read(sim, cik, "temp&hum").text == "temp=21&hum=40"
    assert record(sim, cik, f"alias=temp&{now - 600}=5").status_code == 204
    assert read(sim, cik, "temp").text == "temp=21"  # the latest is still the newest
    assert record(sim, cik, f"alias=temp&{now}=22").status_code == 204  # same second: replaced
    assert read(sim, cik, "temp").text == "temp=22"
    assert registry.request_log()[-1].call is Call.READ
    assert Call.RECORD in {e.call for e in registry.request_log()}


def test_record_refuses_two_values_of_an_alias_within_a_second(
    sim: Simulator, registry: Registry
) -> None:
    cik = activate(sim, "ABC123")
    body = "alias=temp&100=1&100=2&alias=hum&50=1&alias=door&7=a&8=b&alias=door&7=c"
    answer = record(sim, cik, body)
    assert answer.status_code == 409
    assert answer.text == "temp=100&door=7"
    assert registry.points(VENDOR, MODEL, "ABC123", "hum") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda sim, cik: write(sim, cik, "temp=1"),
        lambda sim, cik: write(sim, cik, "", query="temp"),
        lambda sim, cik: read(sim, cik, "temp"),
        lambda sim, cik: record(sim, cik, "alias=temp&100=1"),
        lambda sim, cik: write(sim, cik, "=oops"),  # the CIK is refused before the form
        lambda sim, cik: rpc(sim, cik or ""),
    ],
)
def test_a_cik_not_accepted_is_refused_everywhere(
    sim: Simulator,
    registry: Registry,
    clock: FakeClock,
    call: Callable[[Simulator, str | None], requests.Response],
) -> None:
    cik = activate(sim, "ABC123")
    assert write(sim, cik, "temp=0").status_code == 204
    registry.regenerate(VENDOR, MODEL, "ABC123")
    for refused in (cik, None, "f" * 40, ""):
        assert call(sim, refused).status_code == 401
    assert registry.points(VENDOR, MODEL, "ABC123", "temp") == [(int(clock.now), "0")]


@pytest.mark.parametrize(
    ("kind", "data", "content_type"),
    [
        ("write", "temp", FORM),
        ("write", "temp=1&&hum=2", FORM),
        ("write", "=1", FORM),
        ("write", "", FORM),
        ("write", "temp=%ff", FORM),
        ("write", "temp=1", "text/plain"),
        ("write", "temp=1", "application/json"),
        ("write", f"{'a' * 129}=1", FORM),
        ("read", "temp=1", FORM),
        ("read", "temp&=x", FORM),
        ("read", "%ff", FORM),
        ("record", "100=1", FORM),
        ("record", "alias=temp", FORM),
        ("record", "alias=temp&soon=1", FORM),
        ("record", "alias=temp&-5=1", FORM),
        ("record", "alias=temp&1.5=1", FORM),
        ("record", f"alias=temp&{'9' * 13}=1", FORM),
        ("record", "alias=&100=1", FORM),
        ("record", "alias=temp&100=1", "text/plain"),
    ],
)
def test_a_malformed_data_request_answers_400(
    sim: Simulator, registry: Registry, kind: str, data: str, content_type: str
) -> None:
    cik = activate(sim, "ABC123")
    headers = {"X-Exosite-CIK": cik, "Content-Type": content_type}
    if kind == "read":
        answer = requests.get(f"{sim.url}{ALIAS}?{data}", headers=headers, timeout=TIMEOUT)
    else:
        path = ALIAS if kind == "write" else RECORD
        answer = requests.post(f"{sim.url}{path}", data=data, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.text.strip()
    assert registry.request_log()[-1].status == 400
    assert registry.request_log()[-1].sn == "ABC123"
    assert write(sim, cik, "", query="temp").status_code == 204  # nothing was written


def test_what_a_device_keeps_is_bounded(
    sim: Simulator, registry: Registry, clock: FakeClock
) -> None:
    cik = activate(sim, "ABC123")
    big = "x" * (MAX_VALUE_BYTES + 1)
    assert write(sim, cik, {"temp": big}).status_code == 413
    assert record(sim, cik, f"alias=temp&100={big}").status_code == 413
    assert write(sim, cik, {"temp": "é" * (MAX_VALUE_BYTES // 2)}).status_code == 204
    assert write(sim, cik, {"temp": "é" * (MAX_VALUE_BYTES // 2) + "x"}).status_code == 413

    many = {f"a{n}": str(n) for n in range(MAX_ALIASES - 1)}
    assert write(sim, cik, many).status_code == 204  # temp and these: the cap
    over = write(sim, cik, {"a0": "new", "one-too-many": "1"})
    assert over.status_code == 413
    assert str(MAX_ALIASES) in over.text
    assert read(sim, cik, "a0&one-too-many").text == "a0=0"  # nothing of it written
    assert write(sim, cik, {"a0": "new"}).status_code == 204  # a held alias still takes values

    points = "&".join(f"{1000 + n}={n}" for n in range(MAX_POINTS + 4))
    assert record(sim, cik, f"alias=a1&{points}").status_code == 204
    kept = registry.points(VENDOR, MODEL, "ABC123", "a1")
    assert len(kept) == MAX_POINTS
    assert kept[-1] == (int(clock.now), "1")  # the write's, the newest
    assert kept[0] == (1000 + 5, "5")


def test_values_are_gone_once_the_device_is_added_again(sim: Simulator, registry: Registry) -> None:
    cik = activate(sim, "ABC123")
    assert write(sim, cik, "temp=1").status_code == 204
    body = {"vendor": VENDOR, "model": MODEL, "sn": "ABC123", "state": "activated"}
    assert requests.post(f"{sim.url}/_sim/devices", json=body, timeout=TIMEOUT).status_code == 201
    assert read(sim, cik, "temp").status_code == 204
    assert registry.points(VENDOR, MODEL, "ABC123", "temp") == []


def test_faults_and_latency_apply_to_the_data_api(sim: Simulator, registry: Registry) -> None:
    cik = activate(sim, "ABC123")
    registry.error_rate = 1.0
    assert write(sim, cik, "temp=1").status_code == 503
    assert read(sim, cik, "temp").status_code == 503
    registry.error_rate = 0.0
    registry.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        record(sim, cik, "alias=temp&100=1")
    registry.drop_rate = 0.0
    registry.set_latency("ABC123", 30)
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{sim.url}{ALIAS}?temp", headers={"X-Exosite-CIK": cik}, timeout=0.3)
    registry.set_latency("ABC123", 0)
    assert registry.points(VENDOR, MODEL, "ABC123", "temp") == []
    log = [(e.call, e.status) for e in registry.request_log() if e.call is not Call.ACTIVATE]
    assert log == [(Call.WRITE, 503), (Call.READ, 503), (Call.RECORD, DROP), (Call.READ, 204)]


def test_a_murano_product_activates_by_id_and_then_writes_and_reads(
    sim: Simulator, registry: Registry
) -> None:
    host = {"Host": "p1abc.m2.exosite.io"}
    activated = requests.post(
        f"{sim.url}/provision/activate", data={"id": "M-1"}, headers=host, timeout=TIMEOUT
    )
    assert activated.status_code == 200
    cik = activated.text
    assert registry.issued() == [("M-1", cik)]
    again = requests.post(f"{sim.url}/provision/activate", data={"id": "M-1"}, timeout=TIMEOUT)
    assert again.status_code == 409
    headers = {**host, "X-Exosite-CIK": cik, "Content-Type": FORM}
    written = requests.post(f"{sim.url}{ALIAS}", data="state=on", headers=headers, timeout=TIMEOUT)
    assert written.status_code == 204
    assert read(sim, cik, "state").text == "state=on"
    assert rpc(sim, cik).json()[0]["result"] == device_rid(*MURANO, "M-1")


def test_the_data_api_never_logs_the_cik(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayd.sim")
    cik = activate(sim, "ABC123")
    write(sim, cik, "temp=1")
    read(sim, cik, "temp")
    record(sim, cik, "alias=temp&100=1")
    write(sim, cik[::-1], "temp=1")
    assert "write sn='ABC123': 204" in caplog.text
    assert "record sn='ABC123': 204" in caplog.text
    assert "write sn='': 401" in caplog.text
    assert cik not in caplog.text
    assert cik[::-1] not in caplog.text
