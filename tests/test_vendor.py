"""The vendor management API: the simulator's two calls and the client, over real HTTP."""

from __future__ import annotations

import logging
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest
import requests
from conftest import FakeClock

from gatewayd.adapters.http import HttpError
from gatewayd.adapters.vendor import SerialState, SerialStatus, VendorApiError, VendorClient
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.errors import ExositeError
from gatewayd.core.secret import Secret
from gatewayd.sim import (
    DROP,
    EXPIRY_SECONDS,
    Call,
    LogEntry,
    Registry,
    Request,
    Response,
    Route,
    Simulator,
    State,
    device_rid,
)

pytestmark = pytest.mark.http

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

VENDOR = "acme"
MODEL = "thermo-v1"
TOKEN = "5f0c9e2b7a14d3c8e6f1a2b3c4d5e6f708192a3b"
WRONG = "0000000000000000000000000000000000000000"
TIMEOUT = 5.0
REPO = Path(__file__).resolve().parent.parent
MANAGE = "/provision/manage/model"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    registry = Registry(clock=clock, vendor_token=TOKEN)
    registry.add(VENDOR, MODEL, "ABC123")
    registry.add(VENDOR, MODEL, "USED1", state=State.ACTIVATED)
    registry.add(VENDOR, MODEL, "OLD1", state=State.EXPIRED)
    return registry


@pytest.fixture
def sim(registry: Registry) -> Iterator[Simulator]:
    with Simulator(registry) as sim:
        yield sim


def vendor_client(url: str, token: str = TOKEN, **values: object) -> VendorClient:
    settings: dict[str, object] = {"timeout": 2.0}
    settings.update(values)
    config = ExositeConfig(vendor=VENDOR, model=MODEL, url=url, **settings)  # type: ignore[arg-type]
    return VendorClient(config, Secret(token))


@pytest.fixture
def client(sim: Simulator) -> VendorClient:
    return vendor_client(sim.url)


def activate(url: str, sn: str) -> requests.Response:
    data = {"vendor": VENDOR, "model": MODEL, "sn": sn}
    return requests.post(f"{url}/provision/activate", data=data, timeout=TIMEOUT)


def answer_with(sim: Simulator, method: str, endpoint: Callable[[Request], Response]) -> None:
    """Replace the simulator's routes with one that answers the management path."""
    sim.routes = (Route(method, re.compile(rf"{MANAGE}/[^/]+/[^/]+"), endpoint),)


def no_token_in(error: BaseException, token: str = TOKEN) -> bool:
    texts = [str(error), repr(error), *map(str, error.args)]
    return not any(token in text for text in texts)


# --------------------------------------------------------------------- status


def test_status_of_a_pending_serial(client: VendorClient, registry: Registry) -> None:
    status = client.status(MODEL, "ABC123")
    assert status == SerialStatus(
        "ABC123", MODEL, SerialState.NOT_ACTIVATED, registry.device(VENDOR, MODEL, "ABC123").rid
    )
    assert re.fullmatch(r"[0-9a-f]{40}", status.rid)
    assert registry.manage_calls("ABC123") == 1
    assert registry.calls("ABC123") == 0


def test_status_of_an_activated_serial_keeps_its_rid(
    sim: Simulator, client: VendorClient, registry: Registry
) -> None:
    before = client.status(MODEL, "ABC123")
    assert activate(sim.url, "ABC123").status_code == 200
    after = client.status(MODEL, "ABC123")
    assert after.state is SerialState.ACTIVATED
    assert after.rid == before.rid == device_rid(VENDOR, MODEL, "ABC123")
    assert client.status(MODEL, "USED1").state is SerialState.ACTIVATED
    assert client.status(MODEL, "USED1").rid != after.rid


def test_status_of_a_serial_whose_24_hours_ran_out(
    client: VendorClient, registry: Registry, clock: FakeClock
) -> None:
    registry.add(VENDOR, MODEL, "LATE")
    clock.now += EXPIRY_SECONDS
    assert client.status(MODEL, "LATE").state is SerialState.NOT_ACTIVATED
    clock.now += 1
    assert client.status(MODEL, "LATE").state is SerialState.EXPIRED
    assert client.status(MODEL, "OLD1").state is SerialState.EXPIRED


@pytest.mark.parametrize(
    ("model", "sn"),
    [(MODEL, "NOPE"), (MODEL, "abc123"), ("thermo-v2", "ABC123")],
    ids=["unknown-serial", "serial-in-another-case", "unknown-model"],
)
def test_an_unknown_serial_or_model_is_a_404(
    client: VendorClient, registry: Registry, clock: FakeClock, model: str, sn: str
) -> None:
    with pytest.raises(VendorApiError) as caught:
        client.status(model, sn)
    assert caught.value.http_status == 404
    assert "unknown" in str(caught.value)
    assert repr(sn) in str(caught.value)
    assert isinstance(caught.value, ExositeError)
    assert registry.request_log()[-1] == LogEntry(clock.now, sn, 404, Call.STATUS)


def test_a_model_under_two_vendors_is_ambiguous_to_the_simulator(
    client: VendorClient, registry: Registry
) -> None:
    registry.add("other", MODEL, "ABC123")
    with pytest.raises(VendorApiError) as caught:
        client.status(MODEL, "ABC123")
    assert caught.value.http_status == 409


def test_the_wire_format(sim: Simulator, registry: Registry) -> None:
    url = f"{sim.url}{MANAGE}/{MODEL}/ABC123"
    headers = {"X-Exosite-Token": TOKEN}
    answer = requests.get(url, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.content == f"notactivated,{device_rid(VENDOR, MODEL, 'ABC123')},".encode()
    answer = requests.post(url, data={"enable": "true"}, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 205
    assert answer.content == b""


# ---------------------------------------------------------------------- token


def test_a_wrong_token_is_refused_without_being_shown(
    sim: Simulator, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    activate(sim.url, "ABC123")
    client = vendor_client(sim.url, token=WRONG)
    for call in (client.status, client.reenable):
        with pytest.raises(VendorApiError) as caught:
            call(MODEL, "ABC123")
        assert str(caught.value) == "the vendor token was refused (HTTP 401)"
        assert caught.value.http_status == 401
        assert no_token_in(caught.value, WRONG)
        assert no_token_in(caught.value, TOKEN)
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.ACTIVATED
    assert [e.status for e in registry.request_log()] == [200, 401, 401]
    assert "vendor API: re-enable request for serial ABC123" in caplog.text
    assert WRONG not in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_missing_token_is_refused(sim: Simulator, registry: Registry, method: str) -> None:
    answer = requests.request(
        method, f"{sim.url}{MANAGE}/{MODEL}/USED1", data={"enable": "true"}, timeout=TIMEOUT
    )
    assert answer.status_code == 401
    assert TOKEN not in answer.text
    assert registry.device(VENDOR, MODEL, "USED1").state is State.ACTIVATED


def test_a_simulator_without_a_vendor_token_refuses_every_token(clock: FakeClock) -> None:
    registry = Registry(clock=clock)
    registry.add(VENDOR, MODEL, "ABC123")
    with Simulator(registry) as sim, pytest.raises(VendorApiError) as caught:
        vendor_client(sim.url).status(MODEL, "ABC123")
    assert caught.value.http_status == 401
    registry.set_vendor_token(TOKEN)
    with Simulator(registry) as sim:
        assert vendor_client(sim.url).status(MODEL, "ABC123").state is SerialState.NOT_ACTIVATED


@pytest.mark.parametrize("token", ["", " padded", "line\nbreak", "tab\tinside", "caf\u00e9"])
def test_a_token_a_header_cannot_carry_is_refused_before_sending(
    sim: Simulator, registry: Registry, token: str
) -> None:
    with pytest.raises(VendorApiError) as caught:
        vendor_client(sim.url, token=token)
    assert caught.value.http_status is None
    assert not token or no_token_in(caught.value, token)
    assert registry.total_manage_calls() == 0


@pytest.mark.parametrize("token", ["", "line\nbreak", "caf\u00e9"])
def test_the_simulator_takes_only_a_token_a_header_can_carry(token: str) -> None:
    with pytest.raises(ValueError, match="not shown") as caught:
        Registry(vendor_token=token)
    assert not token or token not in str(caught.value)


# ------------------------------------------------------------------- reenable


def test_reenable_lets_an_activated_device_be_activated_again_with_a_new_cik(
    sim: Simulator, client: VendorClient, registry: Registry
) -> None:
    first = activate(sim.url, "ABC123")
    assert first.status_code == 200
    assert activate(sim.url, "ABC123").status_code == 409
    client.reenable(MODEL, "ABC123")
    assert client.status(MODEL, "ABC123").state is SerialState.NOT_ACTIVATED
    second = activate(sim.url, "ABC123")
    assert second.status_code == 200
    assert len(second.text) == 40
    assert second.text != first.text
    assert registry.issued() == [("ABC123", first.text), ("ABC123", second.text)]
    assert [(e.call, e.status) for e in registry.request_log()] == [
        (Call.ACTIVATE, 200),
        (Call.ACTIVATE, 409),
        (Call.REENABLE, 205),
        (Call.STATUS, 200),
        (Call.ACTIVATE, 200),
    ]


def test_reenable_gives_an_expired_device_a_fresh_24_hours(
    sim: Simulator, client: VendorClient, registry: Registry, clock: FakeClock
) -> None:
    clock.now += 3 * EXPIRY_SECONDS
    client.reenable(MODEL, "OLD1")
    clock.now += EXPIRY_SECONDS
    assert registry.device(VENDOR, MODEL, "OLD1").state is State.PENDING
    clock.now += 1
    assert client.status(MODEL, "OLD1").state is SerialState.EXPIRED
    client.reenable(MODEL, "OLD1")
    assert activate(sim.url, "OLD1").status_code == 200


def test_reenable_of_an_unknown_serial_is_a_404(client: VendorClient) -> None:
    with pytest.raises(VendorApiError) as caught:
        client.reenable(MODEL, "NOPE")
    assert caught.value.http_status == 404


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("", "application/x-www-form-urlencoded"),
        ("enable=false", "application/x-www-form-urlencoded"),
        ("enable=TRUE", "application/x-www-form-urlencoded"),
        ("enable=true&enable=true", "application/x-www-form-urlencoded"),
        ("enable=true&disable=true", "application/x-www-form-urlencoded"),
        ("disable=true", "application/x-www-form-urlencoded"),
        ('{"enable": true}', "application/json"),
        ("enable=true", "text/plain"),
    ],
)
def test_reenable_wants_exactly_enable_true(
    sim: Simulator, registry: Registry, body: str, content_type: str
) -> None:
    url = f"{sim.url}{MANAGE}/{MODEL}/USED1"
    headers = {"Content-Type": content_type}
    answer = requests.post(
        url, data=body, headers={**headers, "X-Exosite-Token": TOKEN}, timeout=TIMEOUT
    )
    assert answer.status_code == 400
    assert registry.device(VENDOR, MODEL, "USED1").state is State.ACTIVATED
    wrong = requests.post(
        url, data=body, headers={**headers, "X-Exosite-Token": WRONG}, timeout=TIMEOUT
    )
    assert wrong.status_code == 401
    assert [e.status for e in registry.request_log()] == [400, 401]


@pytest.mark.parametrize("status", [200, 202, 204, 205])
def test_reenable_takes_any_2xx_as_success(sim: Simulator, status: int) -> None:
    answered: list[Request] = []

    def endpoint(request: Request) -> Response:
        answered.append(request)
        return Response(status, b"")

    answer_with(sim, "POST", endpoint)
    vendor_client(sim.url).reenable(MODEL, "ABC123")
    (request,) = answered
    assert request.body == b"enable=true"
    assert request.headers["X-Exosite-Token"] == TOKEN
    assert request.headers.get_content_type() == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("status", [302, 400, 403, 500])
def test_reenable_takes_anything_else_as_failure(sim: Simulator, status: int) -> None:
    def endpoint(_request: Request) -> Response:
        return Response(status, b"")

    answer_with(sim, "POST", endpoint)
    with pytest.raises(VendorApiError) as caught:
        vendor_client(sim.url).reenable(MODEL, "ABC123")
    assert caught.value.http_status == status
    assert f"HTTP {status}" in str(caught.value)


# --------------------------------------------------------------------- counts


def test_management_calls_are_counted_apart_from_activations(
    sim: Simulator, client: VendorClient, registry: Registry, clock: FakeClock
) -> None:
    activate(sim.url, "ABC123")
    client.status(MODEL, "ABC123")
    clock.now += 5
    client.reenable(MODEL, "ABC123")
    with pytest.raises(VendorApiError):
        vendor_client(sim.url, token=WRONG).status(MODEL, "ABC123")
    with pytest.raises(VendorApiError):
        client.status(MODEL, "NOPE")
    activate(sim.url, "ABC123")
    assert registry.calls("ABC123") == 2
    assert registry.total_calls() == 2
    assert registry.manage_calls("ABC123") == 3
    assert registry.manage_calls("NOPE") == 1
    assert registry.manage_calls("USED1") == 0
    assert registry.total_manage_calls() == 4
    assert registry.device(VENDOR, MODEL, "ABC123").calls == 2
    start = clock.now - 5
    assert registry.request_log() == [
        LogEntry(start, "ABC123", 200),
        LogEntry(start, "ABC123", 200, Call.STATUS),
        LogEntry(start + 5, "ABC123", 205, Call.REENABLE),
        LogEntry(start + 5, "ABC123", 401, Call.STATUS),
        LogEntry(start + 5, "NOPE", 404, Call.STATUS),
        LogEntry(start + 5, "ABC123", 200),
    ]


def test_the_serials_script_is_left_to_activations(
    sim: Simulator, client: VendorClient, registry: Registry
) -> None:
    registry.script("ABC123", [503])
    assert client.status(MODEL, "ABC123").state is SerialState.NOT_ACTIVATED
    assert activate(sim.url, "ABC123").status_code == 503


def test_manage_is_not_for_activations(registry: Registry) -> None:
    with pytest.raises(ValueError, match="activate"):
        registry.manage(Call.ACTIVATE, MODEL, "ABC123", TOKEN)
    assert registry.total_manage_calls() == 0


# -------------------------------------------------------------------- the URL


@pytest.mark.parametrize(
    ("model", "sn"),
    [
        (MODEL, "a/b"),
        (MODEL, "with space"),
        (MODEL, "50%?#&="),
        (MODEL, "caf\u00e9"),
        ("model two", "X-1"),
        (MODEL, "..."),
    ],
)
def test_path_segments_are_quoted(
    client: VendorClient, registry: Registry, model: str, sn: str
) -> None:
    registry.add(VENDOR, model, sn)
    status = client.status(model, sn)
    assert status == SerialStatus(
        sn, model, SerialState.NOT_ACTIVATED, device_rid(VENDOR, model, sn)
    )
    client.reenable(model, sn)
    assert registry.manage_calls(sn) == 2


@pytest.mark.parametrize(("model", "sn"), [(MODEL, "."), (MODEL, ".."), (MODEL, ""), ("..", "X")])
def test_a_dot_segment_is_refused_before_sending(
    client: VendorClient, registry: Registry, model: str, sn: str
) -> None:
    with pytest.raises(VendorApiError) as caught:
        client.status(model, sn)
    assert caught.value.http_status is None
    assert "URL path" in str(caught.value)
    assert registry.total_manage_calls() == 0


# ----------------------------------------------------------- malformed answers


RID = "0123456789abcdef0123456789ABCDEF01234567"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"activated",
        b"activated," + RID.encode(),
        b"ready," + RID.encode() + b",",
        b"Activated," + RID.encode() + b",",
        b"activated,xyz,",
        b"activated," + RID.encode()[:-1] + b",",
        b" activated," + RID.encode() + b",",
        b"activated," + RID.encode() + b",\n\n",
        b"activated," + RID.encode() + b"," + b"x" * 5000,
        "activ\u00e9,".encode() + RID.encode() + b",",
    ],
)
def test_a_malformed_status_body_is_an_error(sim: Simulator, body: bytes) -> None:
    def endpoint(_request: Request) -> Response:
        return Response(200, body)

    answer_with(sim, "GET", endpoint)
    with pytest.raises(VendorApiError) as caught:
        vendor_client(sim.url).status(MODEL, "ABC123")
    assert caught.value.http_status == 200
    assert "not shown" in str(caught.value)
    assert not body or body.decode("latin-1") not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "state"),
    [
        (b"activated," + RID.encode() + b",", SerialState.ACTIVATED),
        (b"notactivated," + RID.encode() + b",\r\n", SerialState.NOT_ACTIVATED),
        (b"expired," + RID.encode() + b",extra,with,commas\n", SerialState.EXPIRED),
    ],
)
def test_a_status_body_is_read_as_status_rid_extra(
    sim: Simulator, body: bytes, state: SerialState
) -> None:
    answer_with(sim, "GET", lambda _: Response(200, body))
    assert vendor_client(sim.url).status(MODEL, "X") == SerialStatus("X", MODEL, state, RID)


def test_a_status_other_than_200_is_an_error_with_its_status(
    client: VendorClient, registry: Registry
) -> None:
    registry.error_rate = 1.0
    with pytest.raises(VendorApiError) as caught:
        client.status(MODEL, "ABC123")
    assert caught.value.http_status == 503
    assert str(caught.value) == "the status request for serial 'ABC123' was answered HTTP 503"


# -------------------------------------------------------------- transport errors


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_closed_port_is_an_error_without_a_status() -> None:
    client = vendor_client(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(VendorApiError) as caught:
        client.status(MODEL, "ABC123")
    assert caught.value.http_status is None
    assert "connection error" in str(caught.value)
    assert isinstance(caught.value.__cause__, HttpError)
    refused = caught.value.__cause__.__cause__
    while refused is not None and not isinstance(refused, ConnectionRefusedError):
        refused = refused.__cause__ or refused.__context__
    assert isinstance(refused, ConnectionRefusedError)
    assert no_token_in(caught.value)


def test_a_dropped_connection_is_an_error(
    client: VendorClient, registry: Registry, clock: FakeClock
) -> None:
    registry.drop_rate = 1.0
    with pytest.raises(VendorApiError) as caught:
        client.reenable(MODEL, "USED1")
    assert caught.value.http_status is None
    assert registry.request_log() == [LogEntry(clock.now, "USED1", DROP, Call.REENABLE)]


def test_a_slow_answer_is_a_timeout(sim: Simulator, registry: Registry) -> None:
    registry.set_latency("ABC123", 30)
    with pytest.raises(VendorApiError) as caught:
        vendor_client(sim.url, timeout=0.2).status(MODEL, "ABC123")
    assert str(caught.value) == "the status request for serial 'ABC123' failed: timeout after 0.2 s"
    assert caught.value.http_status is None


def test_https_to_a_plain_http_server_is_a_tls_error(sim: Simulator) -> None:
    client = vendor_client(f"https://127.0.0.1:{sim.port}")
    with pytest.raises(VendorApiError) as caught:
        client.status(MODEL, "ABC123")
    assert "TLS error" in str(caught.value)
    assert caught.value.http_status is None


def test_a_plain_http_url_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayd.adapters.vendor")
    vendor_client("http://127.0.0.1:9")
    vendor_client("https://127.0.0.1:9")
    records = [r for r in caplog.records if r.name == "gatewayd.adapters.vendor"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "plain HTTP" in records[0].getMessage()


def test_no_log_record_shows_the_token(
    sim: Simulator, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = vendor_client(sim.url)
    client.status(MODEL, "ABC123")
    client.reenable(MODEL, "USED1")
    for model, sn in ((MODEL, "NOPE"), ("nope", "ABC123")):
        with pytest.raises(VendorApiError):
            client.status(model, sn)
    records = [f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records]
    assert any("USED1" in text for text in records)
    assert not [text for text in records if TOKEN in text]
    assert TOKEN not in repr(client.__dict__)


# ------------------------------------------------------------------ the CLI


DEVICES_TOML = """
[[device]]
vendor = "acme"
model = "thermo-v1"
sn = "ABC123"
"""


def read_line(stream: IO[str], timeout: float = TIMEOUT) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_cli_vendor_token_file(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    devices.write_text(DEVICES_TOML)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ["--port", "0", "--devices", str(devices), "--vendor-token-file", str(token_file), "-v"]
    with subprocess.Popen(
        [sys.executable, "-m", "gatewayd.sim", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            url = read_line(proc.stdout).split()[-1]
            client = vendor_client(url)
            assert client.status(MODEL, "ABC123").state is SerialState.NOT_ACTIVATED
            assert activate(url, "ABC123").status_code == 200
            client.reenable(MODEL, "ABC123")
            with pytest.raises(VendorApiError) as caught:
                vendor_client(url, token=WRONG).status(MODEL, "ABC123")
            assert caught.value.http_status == 401
            proc.terminate()
            assert proc.wait(timeout=TIMEOUT) == 0
            output = proc.stdout.read() + proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "reenable model='thermo-v1' sn='ABC123': 205" in output
    assert TOKEN not in output
    assert WRONG not in output


def test_a_re_enable_that_fails_unexpectedly_is_still_reported(sim: Simulator) -> None:
    """The daemon counts every re-enable until its thread reports back: any ending counts."""

    class Broken(VendorClient):
        def reenable(self, model: str, sn: str) -> None:
            raise RuntimeError(f"no re-enable of {sn} of {model}")

    broken = Broken(ExositeConfig(vendor="acme", model="thermo-v1", url=sim.url), Secret(TOKEN))
    said: queue.SimpleQueue[VendorApiError | None] = queue.SimpleQueue()
    broken.reenable_in_background("thermo-v1", "SN-B1", said.put)
    error = said.get(timeout=10)
    assert error is not None
    assert (str(error), error.maybe_done) == ("internal error: RuntimeError", True)


@pytest.mark.parametrize(
    ("fault", "maybe_done"),
    [("error", True), ("drop", True), ("timeout", True), ("token", False), ("unknown", False)],
)
def test_a_failed_re_enable_says_whether_it_may_have_been_carried_out(
    sim: Simulator, fault: str, maybe_done: bool
) -> None:
    """A 5xx, a connection lost or a timeout after the request was sent may come after
    Exosite re-enabled the serial; a 401 or a 404 says it did not."""
    registry = sim.registry
    registry.add("acme", "thermo-v1", "SN-M")
    sn, token = "SN-M", TOKEN
    if fault == "error":
        registry.error_rate = 1.0
    elif fault == "drop":
        registry.drop_rate = 1.0
    elif fault == "timeout":
        registry.set_latency("SN-M", 3.0)
    elif fault == "token":
        token = WRONG
    else:
        sn = "SN-NOBODY"
    config = ExositeConfig(vendor="acme", model="thermo-v1", url=sim.url, timeout=1.0)
    with pytest.raises(VendorApiError) as caught:
        VendorClient(config, Secret(token)).reenable("thermo-v1", sn)
    assert caught.value.maybe_done is maybe_done
