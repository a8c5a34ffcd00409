"""The Exosite simulator, over real HTTP on 127.0.0.1, and its command line."""

from __future__ import annotations

import logging
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest
import requests
from conftest import FakeClock

from gatewayd.core.errors import ConfigError
from gatewayd.sim import DROP, EXPIRY_SECONDS, LogEntry, Registry, Simulator, State

if TYPE_CHECKING:
    from collections.abc import Iterator

VENDOR = "acme"
MODEL = "thermo-v1"
MURANO = ("acme", "murano-p1")
TIMEOUT = 5.0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    registry = Registry(clock=clock, rng=random.Random(7))  # noqa: S311 (faults, not secrets)
    registry.add(VENDOR, MODEL, "ABC123")
    registry.add(VENDOR, MODEL, "USED1", state="activated")
    registry.add(VENDOR, MODEL, "OLD1", state=State.EXPIRED)
    registry.add(*MURANO, "M-1")
    return registry


@pytest.fixture
def sim(registry: Registry) -> Iterator[Simulator]:
    with Simulator(registry, murano=MURANO) as sim:
        yield sim


def activate(
    sim: Simulator, sn: str, vendor: str = VENDOR, model: str = MODEL, timeout: float = TIMEOUT
) -> requests.Response:
    data = {"vendor": vendor, "model": model, "sn": sn}
    return requests.post(f"{sim.url}/provision/activate", data=data, timeout=timeout)


def activate_murano(sim: Simulator, sn: str) -> requests.Response:
    return requests.post(f"{sim.url}/provision/activate", data={"id": sn}, timeout=TIMEOUT)


def test_pending_device_gets_a_cik_once(sim: Simulator, registry: Registry) -> None:
    first = activate(sim, "ABC123")
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert len(first.text) == 40
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.ACTIVATED
    assert registry.issued() == [("ABC123", first.text)]

    second = activate(sim, "ABC123")
    assert second.status_code == 409
    assert first.text not in second.text
    assert registry.issued() == [("ABC123", first.text)]
    assert registry.calls("ABC123") == 2
    assert registry.total_calls() == 2


def test_concurrent_requests_issue_one_cik(sim: Simulator, registry: Registry) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        status = activate(sim, "ABC123").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(statuses) == [200] + [409] * 7
    assert len(registry.issued()) == 1


@pytest.mark.parametrize(
    ("vendor", "model", "sn", "status"),
    [
        ("acme", "thermo-v2", "ABC123", 403),
        ("other", "thermo-v1", "ABC123", 403),
        ("acme", "thermo-v1", "NOPE", 404),
        ("acme", "thermo-v1", "abc123", 404),
        ("acme", "thermo-v1", "USED1", 409),
        ("acme", "thermo-v1", "OLD1", 409),
    ],
)
def test_refusals(
    sim: Simulator, registry: Registry, vendor: str, model: str, sn: str, status: int
) -> None:
    assert activate(sim, sn, vendor, model).status_code == status
    assert registry.issued() == []
    assert registry.request_log()[-1].status == status


def test_registered_pair_without_devices_answers_404(sim: Simulator, registry: Registry) -> None:
    registry.add_pair("acme", "empty")
    assert activate(sim, "ABC123", model="empty").status_code == 404


def test_serials_differing_in_case_are_different_devices(
    sim: Simulator, registry: Registry
) -> None:
    registry.add(VENDOR, MODEL, "abc123")
    upper = activate(sim, "ABC123")
    lower = activate(sim, "abc123")
    assert (upper.status_code, lower.status_code) == (200, 200)
    assert upper.text != lower.text
    assert registry.calls("ABC123") == registry.calls("abc123") == 1


def test_pending_device_expires_after_24_hours(
    sim: Simulator, registry: Registry, clock: FakeClock
) -> None:
    registry.add(VENDOR, MODEL, "LATE")
    clock.now += EXPIRY_SECONDS
    assert activate(sim, "ABC123").status_code == 200
    clock.now += 1
    assert registry.device(VENDOR, MODEL, "LATE").state is State.EXPIRED
    assert activate(sim, "LATE").status_code == 409
    registry.add(VENDOR, MODEL, "LATE")
    assert activate(sim, "LATE").status_code == 200


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({"vendor": VENDOR, "model": MODEL}, {}),
        ({"vendor": VENDOR, "sn": "ABC123"}, {}),
        ({"vendor": VENDOR, "model": MODEL, "sn": ""}, {}),
        ({}, {}),
        ("vendor=acme&model=thermo-v1&sn=ABC123&sn=ABC123", {}),
        ("vendor=acme&model=thermo-v1&sn=ABC123", {"Content-Type": "application/json"}),
        ("vendor=acme&model=thermo-v1&sn=ABC123", {"Content-Type": "text/plain"}),
    ],
)
def test_malformed_requests_answer_400(
    sim: Simulator, registry: Registry, data: str | dict[str, str], headers: dict[str, str]
) -> None:
    if isinstance(data, str):
        headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    response = requests.post(
        f"{sim.url}/provision/activate", data=data, headers=headers, timeout=TIMEOUT
    )
    assert response.status_code == 400
    assert registry.issued() == []
    assert registry.total_calls() == 1


def test_form_with_charset_is_accepted(sim: Simulator) -> None:
    response = requests.post(
        f"{sim.url}/provision/activate",
        data="vendor=acme&model=thermo-v1&sn=ABC123",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200


def test_murano_form(sim: Simulator, registry: Registry) -> None:
    first = activate_murano(sim, "M-1")
    assert first.status_code == 200
    assert len(first.text) == 40
    assert activate_murano(sim, "M-1").status_code == 409
    assert activate_murano(sim, "m-1").status_code == 404
    assert activate_murano(sim, "ABC123").status_code == 404
    assert registry.issued() == [("M-1", first.text)]


def test_murano_form_without_a_murano_product_answers_404(registry: Registry) -> None:
    with Simulator(registry) as sim:
        assert activate_murano(sim, "M-1").status_code == 404
    assert registry.device(*MURANO, "M-1").state is State.PENDING


def test_scripted_statuses_then_normal_behaviour(sim: Simulator, registry: Registry) -> None:
    registry.script("ABC123", [503, 503, 429])
    statuses = [activate(sim, "ABC123").status_code for _ in range(4)]
    assert statuses == [503, 503, 429, 200]
    assert registry.calls("ABC123") == 4
    assert len(registry.issued()) == 1


def test_scripted_200_behaves_normally(sim: Simulator, registry: Registry) -> None:
    registry.error_rate = 1.0
    registry.script("ABC123", [200, 200])
    assert activate(sim, "ABC123").status_code == 200
    assert activate(sim, "ABC123").status_code == 409
    assert activate(sim, "ABC123").status_code == 503


def test_scripted_drop_closes_without_answering(sim: Simulator, registry: Registry) -> None:
    registry.script("ABC123", [DROP])
    with pytest.raises(requests.ConnectionError):
        activate(sim, "ABC123")
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.PENDING
    assert activate(sim, "ABC123").status_code == 200
    assert [entry.status for entry in registry.request_log()] == [DROP, 200]


def test_script_rejects_a_non_status(registry: Registry) -> None:
    with pytest.raises(ValueError, match="700"):
        registry.script("ABC123", [503, 700])


def test_error_rate(sim: Simulator, registry: Registry) -> None:
    registry.error_rate = 1.0
    assert activate(sim, "ABC123").status_code == 503
    registry.error_rate = 0.0
    assert activate(sim, "ABC123").status_code == 200


def test_error_rate_follows_the_seed(clock: FakeClock) -> None:
    def statuses(seed: int) -> list[int]:
        registry = Registry(clock=clock, rng=random.Random(seed))  # noqa: S311 (faults, not secrets)
        registry.add_pair(VENDOR, MODEL)
        registry.error_rate = 0.5
        with Simulator(registry) as sim:
            return [activate(sim, "NOPE").status_code for _ in range(20)]

    first = statuses(3)
    assert set(first) == {404, 503}
    assert statuses(3) == first


def test_drop_rate(sim: Simulator, registry: Registry) -> None:
    registry.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        activate(sim, "ABC123")
    registry.drop_rate = 0.0
    assert activate(sim, "ABC123").status_code == 200


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_rates_are_checked(registry: Registry, value: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        registry.error_rate = value
    with pytest.raises(ValueError, match="rate"):
        registry.drop_rate = value


def test_global_latency_delays_the_answer(sim: Simulator, registry: Registry) -> None:
    registry.latency = 0.2
    started = time.monotonic()
    assert activate(sim, "NOPE").status_code == 404
    assert time.monotonic() - started >= 0.2


def test_per_serial_latency_loses_the_answer_but_not_the_activation(
    sim: Simulator, registry: Registry
) -> None:
    registry.set_latency("ABC123", 30)
    with pytest.raises(requests.ReadTimeout):
        activate(sim, "ABC123", timeout=0.3)
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.ACTIVATED
    assert len(registry.issued()) == 1
    assert activate(sim, "USED1", timeout=TIMEOUT).status_code == 409
    registry.set_latency("ABC123", 0)
    assert activate(sim, "ABC123").status_code == 409


def test_stop_wakes_an_answer_waiting_out_its_latency() -> None:
    answered = threading.Event()

    def clock() -> float:
        answered.set()
        return 0.0

    registry = Registry(clock=clock)
    registry.add(VENDOR, MODEL, "ABC123")
    registry.latency = 60
    answered.clear()
    sim = Simulator(registry)
    outcome: queue.Queue[BaseException | int] = queue.Queue()

    def client() -> None:
        try:
            outcome.put(activate(sim, "ABC123").status_code)
        except requests.RequestException as exc:
            outcome.put(exc)

    thread = threading.Thread(target=client)
    thread.start()
    assert answered.wait(TIMEOUT)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < TIMEOUT
    assert isinstance(outcome.get(timeout=TIMEOUT), requests.ConnectionError)
    thread.join(TIMEOUT)
    assert registry.device(VENDOR, MODEL, "ABC123").state is State.ACTIVATED


def test_list_devices_shows_no_cik(sim: Simulator) -> None:
    cik = activate(sim, "ABC123").text
    response = requests.get(f"{sim.url}/_sim/devices", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert cik not in response.text
    document = response.json()
    assert {"vendor": VENDOR, "model": MODEL, "sn": "ABC123", "state": "activated", "calls": 1} in (
        document["devices"]
    )
    assert {"vendor": VENDOR, "model": MODEL, "sn": "OLD1", "state": "expired", "calls": 0} in (
        document["devices"]
    )
    assert {"vendor": MURANO[0], "model": MURANO[1]} in document["pairs"]


def test_add_device_at_run_time(sim: Simulator, registry: Registry) -> None:
    body = {"vendor": "newco", "model": "m1", "sn": "N-1"}
    assert activate(sim, "N-1", "newco", "m1").status_code == 403
    response = requests.post(f"{sim.url}/_sim/devices", json=body, timeout=TIMEOUT)
    assert response.status_code == 201
    assert response.json() == {**body, "state": "pending", "calls": 1}
    assert activate(sim, "N-1", "newco", "m1").status_code == 200

    done = {"vendor": "newco", "model": "m1", "sn": "N-2", "state": "activated"}
    assert requests.post(f"{sim.url}/_sim/devices", json=done, timeout=TIMEOUT).status_code == 201
    assert registry.device("newco", "m1", "N-2").state is State.ACTIVATED


def test_regenerating_a_cik_at_run_time_makes_the_old_one_refused(sim: Simulator) -> None:
    body = {"vendor": "newco", "model": "m1", "sn": "N-3"}
    assert requests.post(f"{sim.url}/_sim/devices", json=body, timeout=TIMEOUT).status_code == 201
    response = activate(sim, "N-3", "newco", "m1")
    assert response.status_code == 200
    headers = {"X-Exosite-CIK": response.text}
    check = f"{sim.url}/onep:v1/stack/alias"
    assert requests.get(check, headers=headers, timeout=TIMEOUT).status_code == 200
    regenerated = requests.post(f"{sim.url}/_sim/regenerate", json=body, timeout=TIMEOUT)
    assert (regenerated.status_code, regenerated.json()) == (200, body)
    assert requests.get(check, headers=headers, timeout=TIMEOUT).status_code == 401
    unknown = {"vendor": "newco", "model": "m1", "sn": "N-404"}
    assert (
        requests.post(f"{sim.url}/_sim/regenerate", json=unknown, timeout=TIMEOUT).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"vendor": "a", "model": "b"}', "sn: expected a non-empty string"),
        ('{"vendor": "a", "model": "b", "sn": "c", "state": "gone"}', "state: expected one of"),
        ('{"vendor": "a", "model": "b", "sn": "c", "cik": "x"}', "cik: unknown key"),
        ("[1, 2]", "expected a table"),
        ("{not json", "not valid JSON"),
        ("[" * 3000 + "]" * 3000, "not valid JSON"),
    ],
)
def test_add_device_rejects_a_bad_body(
    sim: Simulator, registry: Registry, body: str, message: str
) -> None:
    response = requests.post(
        f"{sim.url}/_sim/devices",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert message in response.text
    assert len(registry.devices()) == 4


def test_add_device_wants_json(sim: Simulator) -> None:
    data = {"vendor": "a", "model": "b", "sn": "c"}
    response = requests.post(f"{sim.url}/_sim/devices", data=data, timeout=TIMEOUT)
    assert response.status_code == 400


def test_unknown_path_and_method(sim: Simulator) -> None:
    assert requests.get(f"{sim.url}/nowhere", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{sim.url}/provision/activate", timeout=TIMEOUT).status_code == 405


def test_request_log_uses_the_clock(sim: Simulator, registry: Registry, clock: FakeClock) -> None:
    activate(sim, "ABC123")
    clock.now += 10
    activate(sim, "NOPE")
    assert registry.request_log() == [
        LogEntry(clock.now - 10, "ABC123", 200),
        LogEntry(clock.now, "NOPE", 404),
    ]


def test_logs_never_show_a_cik(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayd.sim")
    cik = activate(sim, "ABC123", timeout=TIMEOUT).text
    activate_murano(sim, "M-1")
    requests.get(f"{sim.url}/_sim/devices", timeout=TIMEOUT)
    assert "ABC123" in caplog.text
    for _sn, issued in sim.registry.issued():
        assert issued not in caplog.text
    assert [sn for sn, _cik in sim.registry.issued()] == ["ABC123", "M-1"]
    assert cik == sim.registry.issued()[0][1]


def test_stop_closes_the_listening_socket(registry: Registry) -> None:
    sim = Simulator(registry)
    url = sim.url
    sim.stop()
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sim/devices", timeout=TIMEOUT)


DEVICES_TOML = """
[[pair]]
vendor = "acme"
model = "empty"

[[device]]
vendor = "acme"
model = "thermo-v1"
sn = "ABC123"

[[device]]
vendor = "acme"
model = "thermo-v1"
sn = "DONE"
state = "activated"
"""


def test_load_devices_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(DEVICES_TOML)
    registry = Registry(clock=clock)
    registry.load(path)
    assert set(registry.pairs()) == {("acme", "empty"), ("acme", "thermo-v1")}
    states = {device.sn: device.state for device in registry.devices()}
    assert states == {"ABC123": State.PENDING, "DONE": State.ACTIVATED}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[device]\n", "not valid TOML"),
        ('[[devices]]\nvendor = "a"\n', "devices: unknown key"),
        ('[[device]]\nvendor = "a"\nmodel = "b"\n', "device #1, key sn: expected a non-empty"),
        (
            '[[device]]\nvendor = "a"\nmodel = "b"\nsn = "c"\nstate = "new"\n',
            "device #1, key state: expected one of pending, activated, expired",
        ),
        ('[[pair]]\nvendor = "a"\nmodel = 3\n', "pair #1, key model: expected a non-empty"),
        ('device = "x"\n', "device: expected [[device]] tables"),
    ],
)
def test_bad_devices_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(text)
    registry = Registry()
    with pytest.raises(ConfigError) as caught:
        registry.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert registry.devices() == []


def test_missing_devices_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        Registry().load(path)


def read_line(stream: IO[str], timeout: float = TIMEOUT) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gatewayd.sim", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(tmp_path: Path, signum: signal.Signals) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(DEVICES_TOML)
    with run_cli("--port", "0", "--devices", str(path), "--seed", "1") as proc:
        try:
            assert proc.stdout is not None
            line = read_line(proc.stdout)
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split()[-1]
            data = {"vendor": "acme", "model": "thermo-v1", "sn": "ABC123"}
            response = requests.post(f"{url}/provision/activate", data=data, timeout=TIMEOUT)
            assert response.status_code == 200
            proc.send_signal(signum)
            assert proc.wait(timeout=TIMEOUT) == 0
            assert proc.stdout.read() == ""
            assert proc.stderr is not None
            said = proc.stderr.read()
            assert "activate sn='ABC123': 200" in said
            assert response.text not in said
        finally:
            if proc.poll() is None:
                proc.kill()


def test_cli_fault_options(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(DEVICES_TOML)
    args = ("--port", "0", "--devices", str(path), "--error-rate", "1", "--murano", "acme/empty")
    with run_cli(*args) as proc:
        try:
            assert proc.stdout is not None
            url = read_line(proc.stdout).split()[-1]
            data = {"vendor": "acme", "model": "thermo-v1", "sn": "ABC123"}
            response = requests.post(f"{url}/provision/activate", data=data, timeout=TIMEOUT)
            assert response.status_code == 503
            proc.terminate()
            assert proc.wait(timeout=TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def refused_usage(*args: str) -> str:
    """Run ``python -m gatewayd.sim --port 0 ARGS``, which must exit 2 at once saying why
    on stderr and nothing on stdout; its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd.sim", "--port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--devices", "{dir}/absent.toml"), "{dir}/absent.toml: cannot read"),
        (("--devices", "{dir}/bad.toml"), "{dir}/bad.toml: not valid TOML"),
        (("--murano", "acme"), "expected VENDOR/MODEL"),
        (("--error-rate", "2"), "expected a rate between 0 and 1"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "bad.toml").write_text("[[device]\n")
    stderr = refused_usage(*(arg.format(dir=tmp_path) for arg in args))
    assert message.format(dir=tmp_path) in stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "must be non-empty printable ASCII"),
        ("  \n", "must be non-empty printable ASCII"),
        ("first\nsecond\n", "must be non-empty printable ASCII"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_cli_bad_vendor_token_file_exits_2(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    stderr = refused_usage("--vendor-token-file", str(path))
    assert stderr.startswith(f"gatewayd.sim: {path}: ")
    assert message in stderr
    assert "first" not in stderr
