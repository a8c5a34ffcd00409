"""One deadline per request: a server that dribbles its answer cannot hold a request.

The server here reads each request, then sends its answer a byte at a time,
forever: every socket read gets a byte well within ``[exosite] timeout``, so
only a deadline for the whole request ends it. Activation, the vendor API and
a stop of the daemon are each bounded by it.
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

from gatewayd.adapters.exosite import ExositeClient
from gatewayd.adapters.http import Client, HttpError
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


def test_a_kept_connection_is_held_to_the_next_requests_deadline(simulator: Simulator) -> None:
    """The second request goes out on the connection the first one opened: the deadline
    shuts that socket too, however slowly the answer comes."""
    registry = simulator.registry
    for sn in ("SN-K1", "SN-K2"):
        registry.add(VENDOR, MODEL, sn)
    registry.script("SN-K2", [Fault.ISSUED_DRIBBLED])
    client = Client()
    url = f"{simulator.url}/provision/activate"
    form = {"vendor": VENDOR, "model": MODEL}
    try:
        first = client.request("POST", url, form=form | {"sn": "SN-K1"}, timeout=TIMEOUT)
        ended: queue.Queue[BaseException | object] = queue.Queue()

        def second() -> None:
            try:
                ended.put(client.request("POST", url, form=form | {"sn": "SN-K2"}, timeout=TIMEOUT))
            except HttpError as exc:
                ended.put(exc)

        started = time.monotonic()
        threading.Thread(target=second, daemon=True).start()
        outcome = ended.get(timeout=TIMEOUT + SLACK)  # queue.Empty: the deadline did not hold
        took = time.monotonic() - started
    finally:
        client.close()
    assert (first.status, first.broken) == (200, None)
    assert isinstance(outcome, HttpError)
    assert str(outcome) == f"timeout after {TIMEOUT:g} s"
    assert outcome.reached  # the request went out on the kept connection
    assert took < TIMEOUT + SLACK


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
