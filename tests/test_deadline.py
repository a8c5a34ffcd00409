"""One deadline per request: a server that dribbles its answer cannot hold a request.

The server here reads each request, then sends its answer a byte at a time,
forever: every socket read gets a byte well within ``[exosite] timeout``, so
only a deadline for the whole request ends it. Activation, the vendor API and
a stop of the daemon are each bounded by it, and so is the way to a connection:
a connect never answered, a proxy's answer to CONNECT, the TLS handshake.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway

from gatewayd.adapters import cutoff
from gatewayd.adapters.exosite import ExositeClient
from gatewayd.adapters.http import Answer, Client, HttpError
from gatewayd.adapters.vendor import VendorApiError, VendorClient
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import ActivationAnswered, CikChecked, Failed, Issued
from gatewayd.core.secret import Secret
from gatewayd.sim import Fault, Simulator
from gatewayd.sim.node import SimulatedNode

pytestmark = pytest.mark.http

TIMEOUT = 0.5
PACE = 0.05
"""Seconds between two bytes of a dribbled answer: ten per timeout."""
SLACK = 1.0
"""What a deadline may overrun by on a busy machine."""

STATUS = b"HTTP/1.1 "
"""An answer whose status line never ends."""
HEADER = b"HTTP/1.1 200 OK\r\nX-Dribble: "
"""A success whose headers never end."""
BODY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
"""An answer whose body (delimited by the end of the connection) never ends."""
HANDSHAKE = b"\x16\x03\x03\x40\x00"
"""A TLS handshake record of 16 KiB, whose bytes never all come."""
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class Dribbler:
    """Answers each connection with ``start`` at once, then one byte of ``b"0"`` every
    ``PACE`` seconds until the client goes away."""

    def __init__(self, start: bytes) -> None:
        self._start = start
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._sock.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(self._start)
            while not self._stop.wait(PACE):
                conn.sendall(b"0")

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def dribbler() -> Iterator[Callable[[bytes], Dribbler]]:
    made: list[Dribbler] = []

    def make(start: bytes) -> Dribbler:
        made.append(Dribbler(start))
        return made[-1]

    yield make
    for each in made:
        each.close()


def config(url: str) -> ExositeConfig:
    return ExositeConfig(vendor=VENDOR, model=MODEL, url=url, timeout=TIMEOUT, max_concurrent=1)


def activate(url: str) -> tuple[ActivationAnswered, float]:
    """One activation request; its answer, and how long it took."""
    answers: queue.Queue[ActivationAnswered | CikChecked] = queue.Queue()
    client = ExositeClient(config(url), answers.put)
    try:
        started = time.monotonic()
        client.submit("SN-T1", VENDOR, MODEL)
        answered = answers.get(timeout=WAIT)
        assert isinstance(answered, ActivationAnswered)
        return answered, time.monotonic() - started
    finally:
        client.close(timeout=WAIT)


def test_a_status_line_dribbled_forever_ends_at_the_deadline_as_maybe_delivered(
    dribbler: Callable[[bytes], Dribbler],
) -> None:
    answered, took = activate(dribbler(STATUS).url)
    assert answered.outcome == Failed(f"timeout after {TIMEOUT:g} s", maybe_delivered=True)
    assert took < TIMEOUT + SLACK


@pytest.mark.parametrize("start", [HEADER, BODY], ids=["headers", "body"])
def test_a_success_the_deadline_cut_is_kept_and_never_taken_for_a_cik(
    dribbler: Callable[[bytes], Dribbler], start: bytes
) -> None:
    """A 200 status arrived: Exosite may have issued a CIK, and what came of it is kept."""
    answered, took = activate(dribbler(start).url)
    outcome = answered.outcome
    assert isinstance(outcome, Issued)
    assert not outcome.well_formed
    assert "timeout after" in (outcome.problem or "")
    assert set(outcome.cik.reveal()) <= {"0"}
    assert took < TIMEOUT + SLACK


def bounded(call: Callable[[], object]) -> tuple[object, float]:
    """What ``call`` returned or raised (an HttpError), and how long it took; queue.Empty
    if it took longer than the deadline allows."""
    ended: queue.Queue[object] = queue.Queue()

    def run() -> None:
        try:
            ended.put(call())
        except HttpError as exc:
            ended.put(exc)

    started = time.monotonic()
    threading.Thread(target=run, daemon=True).start()
    outcome = ended.get(timeout=TIMEOUT + SLACK)
    return outcome, time.monotonic() - started


def post(client: Client, url: str, sn: str) -> Answer:
    form = {"vendor": VENDOR, "model": MODEL, "sn": sn}
    return client.request("POST", f"{url}/provision/activate", form=form, timeout=TIMEOUT)


def test_a_kept_connection_is_held_to_the_next_requests_deadline(simulator: Simulator) -> None:
    """The second request goes out on the connection the first one opened: the deadline
    shuts that socket too, however slowly the answer comes."""
    registry = simulator.registry
    for sn in ("SN-K1", "SN-K2"):
        registry.add(VENDOR, MODEL, sn)
    registry.script("SN-K2", [Fault.ISSUED_DRIBBLED])
    client = Client()
    try:
        first = post(client, simulator.url, "SN-K1")
        outcome, took = bounded(lambda: post(client, simulator.url, "SN-K2"))
    finally:
        client.close()
    assert isinstance(first, Answer)
    assert (first.status, first.broken) == (200, None)
    assert isinstance(outcome, HttpError)
    assert str(outcome) == f"timeout after {TIMEOUT:g} s"
    assert outcome.reached  # the request went out on the kept connection
    assert took < TIMEOUT + SLACK


def test_a_connect_never_answered_ends_at_the_deadline_as_not_sent() -> None:
    """A listener whose queue of connections is full drops every further SYN, as a
    host that is down or a firewall would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):  # the queue is full
            client = Client()
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            try:
                outcome, took = bounded(lambda: post(client, url, "SN-C1"))
            finally:
                client.close()
    assert isinstance(outcome, HttpError)
    assert str(outcome) == f"timeout after {TIMEOUT:g} s"
    assert not outcome.reached
    assert took < TIMEOUT + SLACK


@pytest.mark.parametrize("through", ["proxy", "handshake"])
def test_the_way_to_a_tls_connection_is_held_to_the_deadline_and_sends_nothing(
    dribbler: Callable[[bytes], Dribbler], monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    """A proxy that dribbles its answer to CONNECT, or a server its TLS handshake: the
    request was never sent."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    if through == "proxy":
        monkeypatch.setenv("https_proxy", dribbler(STATUS).url)
        url = "https://localhost:9"
    else:
        url = dribbler(HANDSHAKE).url.replace("http://", "https://")
    client = Client()
    try:
        outcome, took = bounded(lambda: post(client, url, "SN-W1"))
    finally:
        client.close()
    assert isinstance(outcome, HttpError)
    assert str(outcome) == f"timeout after {TIMEOUT:g} s"
    assert not outcome.reached
    assert took < TIMEOUT + SLACK


def test_a_socket_that_comes_after_the_deadline_passed_is_shut_down() -> None:
    """A connect that ended just as the deadline passed: its socket is still shut down,
    before a proxy's tunnel or a TLS handshake could hold it."""
    late, peer = socket.socketpair()
    first, other = socket.socketpair()
    held: list[socket.socket] = []
    with late, peer, first, other, cutoff.armed(PACE) as deadline:
        deadline.attach(lambda: held[0] if held else None)
        deadline.attach(lambda: first)
        first.settimeout(WAIT)
        assert first.recv(1) == b""  # shut down when the deadline passed
        held.append(late)
        late.settimeout(WAIT)
        started = time.monotonic()
        assert late.recv(1) == b""
        assert time.monotonic() - started < SLACK


@pytest.mark.parametrize("start", [STATUS, HEADER, BODY], ids=["status", "headers", "body"])
def test_the_vendor_api_has_the_same_deadline(
    dribbler: Callable[[bytes], Dribbler], start: bytes
) -> None:
    client = VendorClient(config(dribbler(start).url), Secret("tok-deadline-1"))
    started = time.monotonic()
    with pytest.raises(VendorApiError, match=f"timeout after {TIMEOUT:g} s"):
        client.status(MODEL, "SN-T2")
    assert time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.e2e
def test_a_stop_is_not_held_by_a_dribbling_server(
    dribbler: Callable[[bytes], Dribbler],
    gateway: Callable[..., Gateway],
    node: Callable[..., SimulatedNode],
) -> None:
    gw = gateway(exosite={"url": dribbler(STATUS).url, "timeout": 1.0})
    gw.start()
    node("SN-T3").announce()
    gw.wait_for(r"node SN-T3: activation request sent")
    started = time.monotonic()
    gw.send(signal.SIGTERM)
    assert gw.stop(signum=None) == 0
    assert time.monotonic() - started < 1.0 + 4.0
    (record,) = json.loads(gw.ctl("list", "--json").stdout)
    assert (record["state"], record["uncertain"]) == ("pending", True)
