"""The Exosite client: classification, request forms, limits, and real HTTP to the simulator."""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import MODEL, VENDOR, FakeClock

from gatewayd.adapters.exosite import (
    NOT_SENT,
    ExositeClient,
    classify,
    request_form,
)
from gatewayd.adapters.ratelimit import RateLimiter
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import (
    ActivationAnswered,
    CikChecked,
    Failed,
    Issued,
    Outcome,
    Refused,
)
from gatewayd.core.secret import CIK_LENGTH, Secret
from gatewayd.sim import DROP, Registry, Request, Response, Route, Simulator

pytestmark = pytest.mark.http

WAIT = 5.0
"""Upper bound for any answer a test waits for; a healthy run needs far less."""

MURANO = (VENDOR, "murano-p1")
GOOD_CIK = "0123456789abcdefghijKLMNOPQRST-_.~+/=!@#"


# ------------------------------------------------------------------ classify


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, Refused(404)),
        (403, Refused(403)),
        (409, Refused(409)),
        (400, Refused(400)),
        (401, Refused(401)),
        (405, Refused(405)),
        (410, Refused(410)),
        (499, Refused(499)),
        (429, Failed("HTTP 429", 429)),
        (500, Failed("HTTP 500", 500, maybe_delivered=True)),
        (502, Failed("HTTP 502", 502, maybe_delivered=True)),
        (503, Failed("HTTP 503", 503)),
        (504, Failed("HTTP 504", 504, maybe_delivered=True)),
        (599, Failed("HTTP 599", 599)),
        (100, Failed("unexpected HTTP 100", 100, maybe_delivered=True)),
        (101, Failed("unexpected HTTP 101", 101, maybe_delivered=True)),
        (201, Issued(Secret("Not Found\n"), "HTTP 201, not 200")),
        (202, Issued(Secret("Not Found\n"), "HTTP 202, not 200")),
        (204, Issued(Secret("Not Found\n"), "HTTP 204, not 200")),
        (301, Failed("unexpected HTTP 301", 301, maybe_delivered=True)),
        (302, Failed("unexpected HTTP 302", 302, maybe_delivered=True)),
        (304, Failed("unexpected HTTP 304", 304, maybe_delivered=True)),
    ],
)
def test_classify_follows_the_design_table(status: int, expected: Outcome) -> None:
    assert classify(status, b"Not Found\n") == expected


def test_classify_200_issues_the_body_as_the_cik() -> None:
    outcome = classify(200, GOOD_CIK.encode())
    assert outcome == Issued(Secret(GOOD_CIK))
    assert outcome.well_formed


@pytest.mark.parametrize(
    "body",
    [
        b" " + GOOD_CIK.encode(),
        GOOD_CIK.encode() + b"\n",
        b"\t" + GOOD_CIK.encode() + b"\r\n",
        GOOD_CIK.encode()[:-1],
        GOOD_CIK.encode() + b"z",
        b"",
        b"   \n",
        GOOD_CIK.encode()[:20] + b" " + GOOD_CIK.encode()[21:],
        GOOD_CIK.encode()[:-1] + b"\x7f",
        b"<html><body>Bad Gateway</body></html>",
        b"<p>" + GOOD_CIK.encode()[:33] + b"</p>",
    ],
    ids=[
        "leading-space",
        "trailing-newline",
        "padded-both-ends",
        "short",
        "long",
        "empty",
        "whitespace-only",
        "inner-space",
        "control-char",
        "html-page",
        "markup-40-chars",
    ],
)
def test_classify_keeps_a_malformed_ascii_body_as_received(body: bytes) -> None:
    outcome = classify(200, body)
    assert isinstance(outcome, Issued)
    assert outcome.well_formed is False
    assert outcome.cik.reveal() == body.decode("ascii")


@pytest.mark.parametrize(
    "body",
    [
        "é".encode() * 20,
        b"\xff" * CIK_LENGTH,
        GOOD_CIK.encode()[:-1] + b"\x80",
        b"\x00\xfe\xc3(",
    ],
    ids=["utf8-40-chars", "high-bytes", "one-high-byte", "invalid-utf8"],
)
def test_classify_keeps_a_non_ascii_body_byte_for_byte(body: bytes) -> None:
    outcome = classify(200, body)
    assert isinstance(outcome, Issued)
    assert outcome.well_formed is False
    assert outcome.cik.reveal().encode("latin-1") == body


def test_an_issued_cik_does_not_show_in_its_repr() -> None:
    outcome = classify(200, GOOD_CIK.encode())
    assert GOOD_CIK not in repr(outcome)
    assert GOOD_CIK not in f"{outcome}"


# -------------------------------------------------------------- request form


def exosite_config(url: str, **values: object) -> ExositeConfig:
    settings: dict[str, object] = {"timeout": 2.0, "max_rate": 1000.0, "max_concurrent": 4}
    settings.update(values)
    return ExositeConfig(vendor=VENDOR, model=MODEL, url=url, **settings)  # type: ignore[arg-type]


def test_request_form_onep_sends_vendor_model_and_serial() -> None:
    config = exosite_config("https://m2.exosite.com")
    assert request_form(config, VENDOR, "hygro", "Sn-1") == {
        "vendor": VENDOR,
        "model": "hygro",
        "sn": "Sn-1",
    }


def test_request_form_murano_sends_only_the_id() -> None:
    config = exosite_config("https://p1abc.m2.exosite.io", api="murano")
    assert request_form(config, VENDOR, MODEL, "Sn-1") == {"id": "Sn-1"}


# --------------------------------------------------------------- rate limiter


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_rate_limiter_spaces_callers_evenly() -> None:
    clock = FakeClock(500.0)
    limiter = RateLimiter(4.0, clock)
    stop = RecordingStop()
    assert [limiter.wait(stop) for _ in range(4)] == [True] * 4
    assert stop.waits == pytest.approx([0.25, 0.5, 0.75])


def test_rate_limiter_does_not_bank_idle_time() -> None:
    clock = FakeClock(500.0)
    limiter = RateLimiter(2.0, clock)
    stop = RecordingStop()
    assert limiter.wait(stop)
    clock.now += 60.0
    assert limiter.wait(stop)
    assert limiter.wait(stop)
    assert stop.waits == pytest.approx([0.5])


def test_rate_limiter_counts_from_the_later_of_now_and_the_next_slot() -> None:
    clock = FakeClock(500.0)
    limiter = RateLimiter(1.0, clock)
    stop = RecordingStop()
    assert limiter.wait(stop)
    clock.now += 0.25
    assert limiter.wait(stop)
    assert stop.waits == pytest.approx([0.75])


def test_rate_limiter_refuses_once_stopped() -> None:
    clock = FakeClock(500.0)
    limiter = RateLimiter(1.0, clock)
    stop = RecordingStop()
    stop.set()
    assert limiter.wait(stop) is False
    assert limiter.wait(stop) is False


def test_rate_limiter_wakes_a_waiting_caller_on_stop() -> None:
    limiter = RateLimiter(0.1)
    stop = threading.Event()
    assert limiter.wait(stop)
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    started = time.monotonic()
    assert limiter.wait(stop) is False
    assert time.monotonic() - started < 2.0
    timer.join()


# ------------------------------------------------------- client against the simulator


class Results:
    """The client's ``deliver``: collects answers and lets a test wait for them.

    Taking an answer hands it back to the client as handled, as the daemon's main
    thread does once it has stored the CIK.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[ActivationAnswered] = queue.Queue()
        self.checked: queue.Queue[CikChecked] = queue.Queue()
        self.client: ExositeClient | None = None

    def __call__(self, answered: ActivationAnswered | CikChecked) -> None:
        if isinstance(answered, CikChecked):
            self.checked.put(answered)
        else:
            self._queue.put(answered)

    def take(self, count: int, timeout: float = WAIT) -> list[ActivationAnswered]:
        deadline = time.monotonic() + timeout
        taken = []
        for _ in range(count):
            answered = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if self.client is not None:
                self.client.handled(answered)
            taken.append(answered)
        return taken

    def one(self) -> Outcome:
        return self.take(1)[0].outcome

    def by_sn(self, count: int) -> dict[str, Outcome]:
        return {answered.sn: answered.outcome for answered in self.take(count)}

    def nothing_more(self) -> bool:
        return self._queue.empty()


class Arrivals:
    """A probe in the simulator's routing table: when each activation request arrived."""

    def __init__(self, sim: Simulator) -> None:
        self.times: list[float] = []
        self._cond = threading.Condition()
        route = sim.routes[0]
        assert route.pattern.pattern == "/provision/activate"
        inner = route.endpoint

        def endpoint(request: Request) -> Response:
            with self._cond:
                self.times.append(time.monotonic())
                self._cond.notify_all()
            return inner(request)

        sim.routes = (Route(route.method, route.pattern, endpoint), *sim.routes[1:])

    def reached(self, count: int, within: float) -> bool:
        """Whether ``count`` requests have arrived, or do within ``within`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.times) >= count, within)

    def wait_for(self, count: int, timeout: float = WAIT) -> None:
        assert self.reached(count, timeout), f"{len(self.times)} of {count} requests arrived"


Make = Callable[..., tuple[ExositeClient, Results]]


@pytest.fixture
def registry() -> Registry:
    registry = Registry(clock=time.monotonic)
    registry.add_pair(VENDOR, MODEL)
    for sn in ("ABC123", "abc123", "USED1", "SLOW1", "FLAKY1", "DROP1"):
        registry.add(VENDOR, MODEL, sn)
    registry.add(VENDOR, MODEL, "USED1", state="activated")
    return registry


@pytest.fixture
def make_client() -> Iterator[Make]:
    made: list[ExositeClient] = []

    def make(url: str, **values: object) -> tuple[ExositeClient, Results]:
        results = Results()
        client = ExositeClient(exosite_config(url, **values), results)
        results.client = client
        made.append(client)
        return client, results

    yield make
    for client in made:
        client.close(timeout=WAIT)
        assert not any(worker.is_alive() for worker in client._workers)


def issued_ciks(registry: Registry) -> list[str]:
    return [cik for _sn, cik in registry.issued()]


def test_activation_delivers_the_simulators_cik(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url)
    client.submit("ABC123", VENDOR, MODEL)
    (answered,) = results.take(1)
    assert answered.sn == "ABC123"
    assert answered.outcome == Issued(Secret(dict(registry.issued())["ABC123"]))
    assert registry.device(VENDOR, MODEL, "ABC123").state == "activated"


def test_serials_that_differ_in_case_are_activated_separately(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url)
    client.submit("ABC123", VENDOR, MODEL)
    client.submit("abc123", VENDOR, MODEL)
    outcomes = results.by_sn(2)
    issued = dict(registry.issued())
    assert outcomes == {sn: Issued(Secret(issued[sn])) for sn in ("ABC123", "abc123")}
    assert issued["ABC123"] != issued["abc123"]


def test_refusals_carry_the_status(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url)
    client.submit("NOSUCH", VENDOR, MODEL)
    client.submit("ABC123", VENDOR, "no-such-model")
    client.submit("USED1", VENDOR, MODEL)
    assert results.by_sn(3) == {
        "NOSUCH": Refused(404),
        "ABC123": Refused(403),
        "USED1": Refused(409),
    }
    assert registry.issued() == []


def test_scripted_server_errors_are_failures_with_the_status(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    registry.script("FLAKY1", [503, 429, 500, 200])
    client, results = make_client(simulator.url, max_concurrent=1)
    for _ in range(4):
        client.submit("FLAKY1", VENDOR, MODEL)
    outcomes = [answered.outcome for answered in results.take(4)]
    assert outcomes[:3] == [
        Failed("HTTP 503", 503),
        Failed("HTTP 429", 429),
        Failed("HTTP 500", 500, maybe_delivered=True),
    ]
    assert outcomes[3] == Issued(Secret(dict(registry.issued())["FLAKY1"]))


def test_a_dropped_connection_is_a_failure_and_is_not_retried(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    registry.script("DROP1", [DROP])
    client, results = make_client(simulator.url)
    client.submit("DROP1", VENDOR, MODEL)
    outcome = results.one()
    assert isinstance(outcome, Failed)
    assert outcome.error.startswith("connection error")
    assert outcome.http_status is None
    assert outcome.maybe_delivered
    assert registry.calls("DROP1") == 1


def test_an_answer_slower_than_the_timeout_is_a_failure(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    registry.set_latency("SLOW1", 0.5)
    client, results = make_client(simulator.url, timeout=0.2)
    started = time.monotonic()
    client.submit("SLOW1", VENDOR, MODEL)
    # the request reached Exosite and may have been acted on
    assert results.one() == Failed("timeout after 0.2 s", maybe_delivered=True)
    assert time.monotonic() - started < 0.5


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_closed_port_is_a_connection_error(make_client: Make) -> None:
    client, results = make_client(f"http://127.0.0.1:{closed_port()}")
    client.submit("ABC123", VENDOR, MODEL)
    outcome = results.one()
    assert isinstance(outcome, Failed)
    assert outcome.error.startswith("connection error")
    assert "refused" in outcome.error.lower()
    assert outcome.http_status is None
    assert not outcome.maybe_delivered  # never reached Exosite


def test_a_redirect_is_not_followed(simulator: Simulator, make_client: Make) -> None:
    def redirect(_request: Request) -> Response:
        return Response(302, b"", "text/plain")

    route = simulator.routes[0]
    simulator.routes = (Route("POST", route.pattern, redirect), *simulator.routes[1:])
    client, results = make_client(simulator.url)
    client.submit("ABC123", VENDOR, MODEL)
    assert results.one() == Failed("unexpected HTTP 302", 302, maybe_delivered=True)


@pytest.mark.parametrize("body", [b"  padded-cik  \n", b"\xfe\xffcik", b"short"])
def test_a_malformed_200_body_over_http_is_kept(
    simulator: Simulator, make_client: Make, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    caplog.set_level(logging.DEBUG)

    def odd(_request: Request) -> Response:
        return Response(200, body, "text/plain")

    route = simulator.routes[0]
    simulator.routes = (Route("POST", route.pattern, odd), *simulator.routes[1:])
    client, results = make_client(simulator.url)
    client.submit("ABC123", VENDOR, MODEL)
    outcome = results.one()
    assert isinstance(outcome, Issued)
    assert outcome.well_formed is False
    assert outcome.cik.reveal().encode("latin-1") == body
    text = outcome.cik.reveal()
    assert not [r for r in caplog.records if text in r.getMessage()]


def test_the_murano_form_activates_against_a_murano_product(
    registry: Registry, make_client: Make
) -> None:
    registry.add(*MURANO, "M-1")
    with Simulator(registry, murano=MURANO) as sim:
        client, results = make_client(sim.url, api="murano")
        client.submit("M-1", VENDOR, MODEL)
        client.submit("M-UNKNOWN", VENDOR, MODEL)
        outcomes = results.by_sn(2)
    assert outcomes == {
        "M-1": Issued(Secret(dict(registry.issued())["M-1"])),
        "M-UNKNOWN": Refused(404),
    }
    assert registry.device(*MURANO, "M-1").state == "activated"


def test_the_murano_form_is_refused_where_no_product_is_served(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url, api="murano")
    client.submit("ABC123", VENDOR, MODEL)
    assert results.one() == Refused(404)
    assert registry.issued() == []


# -------------------------------------------------------------------- limits


LOGGED_LATE = 0.05
"""The most a request's log entry may follow its arrival at the simulator (it is parsed first)."""


def most_overlapping(starts: list[float], length: float) -> int:
    """The largest number of the intervals [start, start + length) that share a moment."""
    return max(sum(1 for other in starts if other <= start < other + length) for start in starts)


def test_at_most_max_concurrent_requests_are_in_flight(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    latency = 0.25
    serials = [f"C{i}" for i in range(4)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    registry.latency = latency
    client, results = make_client(simulator.url, max_concurrent=2)
    for sn in serials:
        client.submit(sn, VENDOR, MODEL)
    outcomes = results.by_sn(len(serials))
    assert outcomes.keys() == set(serials)
    assert all(isinstance(outcome, Issued) for outcome in outcomes.values())
    starts = [entry.time for entry in registry.request_log()]
    assert len(starts) == len(serials)
    # a request is logged a moment after it arrived, and answered ``latency`` after its
    # arrival: the logged intervals are a little shorter than ``latency``
    assert most_overlapping(starts, latency - LOGGED_LATE) == 2


def test_at_most_max_rate_requests_start_per_second(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    rate = 10
    serials = [f"R{i}" for i in range(rate + 1)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    client, results = make_client(simulator.url, max_rate=float(rate), max_concurrent=8)
    for sn in serials:
        client.submit(sn, VENDOR, MODEL)
    results.take(len(serials))
    starts = sorted(entry.time for entry in registry.request_log())
    tolerance = 0.05
    windows = [later - earlier for earlier, later in zip(starts, starts[rate:], strict=False)]
    assert min(windows) >= 1.0 - tolerance
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 1.0 / rate - tolerance


# --------------------------------------------------------------------- close


def test_close_reports_queued_jobs_unsent_and_lets_the_request_on_the_wire_finish(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    arrivals = Arrivals(simulator)
    registry.set_latency("SLOW1", 0.3)
    client, results = make_client(simulator.url, max_concurrent=1)
    client.submit("SLOW1", VENDOR, MODEL)
    client.submit("ABC123", VENDOR, MODEL)
    client.submit("abc123", VENDOR, MODEL)
    arrivals.wait_for(1)
    client.close(timeout=WAIT)
    outcomes = results.by_sn(3)
    assert outcomes["SLOW1"] == Issued(Secret(dict(registry.issued())["SLOW1"]))
    assert outcomes["ABC123"] == Failed(NOT_SENT)
    assert outcomes["abc123"] == Failed(NOT_SENT)
    assert NOT_SENT.startswith("not sent: ")
    assert registry.calls("ABC123") == registry.calls("abc123") == 0
    assert results.nothing_more()


def test_close_returns_once_the_last_request_ends(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    arrivals = Arrivals(simulator)
    registry.set_latency("SLOW1", 0.3)
    client, results = make_client(simulator.url, max_concurrent=3)
    client.submit("SLOW1", VENDOR, MODEL)
    arrivals.wait_for(1)
    started = time.monotonic()
    client.close(timeout=WAIT)
    assert time.monotonic() - started < WAIT / 2
    assert not any(worker.is_alive() for worker in client._workers)
    assert isinstance(results.one(), Issued)


def test_a_job_submitted_after_close_is_reported_unsent(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url)
    client.close(timeout=WAIT)
    client.submit("ABC123", VENDOR, MODEL)
    assert results.take(1) == [ActivationAnswered("ABC123", Failed(NOT_SENT))]
    assert registry.calls("ABC123") == 0


def test_close_wakes_jobs_waiting_for_their_rate_slot(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    client, results = make_client(simulator.url, max_rate=0.2, max_concurrent=2)
    client.submit("ABC123", VENDOR, MODEL)
    assert isinstance(results.one(), Issued)
    client.submit("abc123", VENDOR, MODEL)
    started = time.monotonic()
    client.close(timeout=WAIT)
    assert results.take(1) == [ActivationAnswered("abc123", Failed(NOT_SENT))]
    assert time.monotonic() - started < 2.0
    assert registry.calls("abc123") == 0


# ------------------------------------------------------------------- logging


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "HTTP://127.0.0.1:9"])
def test_a_plain_http_url_logs_a_warning(
    make_client: Make, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.WARNING, logger="gatewayd.adapters.exosite")
    make_client(url)
    warnings = [r for r in caplog.records if r.name == "gatewayd.adapters.exosite"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "plain HTTP" in warnings[0].getMessage()


def test_an_https_url_logs_no_warning(make_client: Make, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayd.adapters.exosite")
    make_client("https://127.0.0.1:9")
    assert [r for r in caplog.records if r.name == "gatewayd.adapters.exosite"] == []


def test_no_cik_reaches_a_log_record_or_an_error(
    simulator: Simulator, registry: Registry, make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry.script("FLAKY1", [503, 200])
    registry.script("DROP1", [DROP])
    registry.set_latency("SLOW1", 0.4)
    client, results = make_client(simulator.url, timeout=0.2)
    for sn in ("ABC123", "abc123", "FLAKY1", "FLAKY1", "DROP1", "SLOW1", "USED1", "NOSUCH"):
        client.submit(sn, VENDOR, MODEL)
    outcomes = [answered.outcome for answered in results.take(8)]
    ciks = issued_ciks(registry)
    assert len(ciks) == 4
    assert sum(isinstance(outcome, Issued) for outcome in outcomes) == 3
    errors = [outcome.error for outcome in outcomes if isinstance(outcome, Failed)]
    assert len(errors) == 3
    records = [f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records]
    assert records
    leaks = [cik for cik in ciks if any(cik in text for text in records + errors)]
    assert leaks == []


def test_a_200_cut_short_keeps_what_arrived(make_client: Make) -> None:
    """A server that promises 40 bytes, sends 10 and hangs up: those 10 are not dropped."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 40\r\n\r\n0123456789"
                )
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        client, results = make_client(f"http://127.0.0.1:{listener.getsockname()[1]}")
        client.submit("ABC123", VENDOR, MODEL)
        outcome = results.one()
        server.join(WAIT)
    assert isinstance(outcome, Issued)
    assert outcome.cik == Secret("0123456789")
    assert (outcome.problem or "").startswith("10 bytes arrived before the answer broke off")


def test_a_name_that_does_not_resolve_is_a_failure_that_never_reached_exosite(
    make_client: Make,
) -> None:
    client, results = make_client("http://gatewayd-test.invalid")
    client.submit("ABC123", VENDOR, MODEL)
    outcome = results.one()
    assert isinstance(outcome, Failed)
    assert outcome.error.startswith("connection error")
    assert not outcome.maybe_delivered


def test_no_more_answers_wait_unhandled_than_twice_max_concurrent(
    simulator: Simulator, registry: Registry, make_client: Make
) -> None:
    """A CIK received and not yet stored can be lost by a crash: their number is bounded.
    At most max_concurrent requests are on the wire, and as many answers may wait for
    the disk meanwhile."""
    arrivals = Arrivals(simulator)
    serials = [f"BOUND{i}" for i in range(7)]
    for sn in serials:
        registry.add(VENDOR, MODEL, sn)
    client, results = make_client(simulator.url, max_concurrent=2, max_rate=1000)
    for sn in serials:
        client.submit(sn, VENDOR, MODEL)
    arrivals.wait_for(4)
    held = [results._queue.get(timeout=WAIT) for _ in range(4)]  # answered, not handled
    assert not arrivals.reached(5, within=0.5)
    client.handled(held[0])
    arrivals.wait_for(5)
    assert not arrivals.reached(6, within=0.2)
    for answer in held[1:]:
        client.handled(answer)
    assert len(results.take(3)) == 3
    assert len(arrivals.times) == 7
