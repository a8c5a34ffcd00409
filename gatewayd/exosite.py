"""The Exosite provisioning client: bounded worker threads around ``requests``.

Each request runs on one of ``max_concurrent`` worker threads, after taking a
slot from a rate limiter that lets at most ``max_rate`` requests start per
second. Every answer, and every failure, is classified into an outcome
(:mod:`gatewayd.events`) and handed to ``deliver``, which puts it on the
daemon's queue. requests' exceptions never leave this module.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import requests
import urllib3

from gatewayd.config import ExositeConfig
from gatewayd.events import ActivationAnswered, Failed, Issued, Outcome, Refused
from gatewayd.secret import Secret

log = logging.getLogger(__name__)

ACTIVATE_PATH: Final = "/provision/activate"
CIK_LENGTH: Final = 40
_CHAIN_LIMIT: Final = 8
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded; charset=utf-8"
NOT_SENT: Final = "not sent: gatewayd is stopping"


def classify(status: int, body: bytes) -> Outcome:
    """Map an HTTP answer to an outcome, per the table in DESIGN.md."""
    if status == 200:
        return _issued(body)
    if status == 429 or status >= 500:
        return Failed(f"HTTP {status}", status)
    if 400 <= status < 500:
        return Refused(status)
    return Failed(f"unexpected HTTP {status}", status)


def _issued(body: bytes) -> Issued:
    """A 200 body is never dropped: one that is not a clean CIK is kept as received.

    Nothing is stripped or re-encoded away: a body that is not valid ASCII is
    decoded as Latin-1, which maps each byte to one character and back.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return Issued(Secret(body.decode("latin-1")), well_formed=False)
    well_formed = len(text) == CIK_LENGTH and text.isprintable() and " " not in text
    return Issued(Secret(text), well_formed=well_formed)


def request_form(config: ExositeConfig, vendor: str, model: str, sn: str) -> dict[str, str]:
    """The form body of an activation request, in the configured API's form."""
    if config.api == "murano":
        return {"id": sn}
    return {"vendor": vendor, "model": model, "sn": sn}


class RateLimiter:
    """Lets at most ``rate`` callers through per second, spaced evenly."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._interval = 1.0 / rate

    def wait(self, stop: threading.Event) -> bool:
        """Block until the caller's slot; False if ``stop`` was set meanwhile."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


class ExositeClient:
    """Sends activation requests without blocking the caller."""

    def __init__(
        self, config: ExositeConfig, deliver: Callable[[ActivationAnswered], None]
    ) -> None:
        self._config = config
        self._deliver = deliver
        self._url = config.url.rstrip("/") + ACTIVATE_PATH
        self._verify: bool | str = str(config.ca_file) if config.ca_file else True
        self._jobs: queue.SimpleQueue[tuple[str, str, str] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._limiter = RateLimiter(config.max_rate)
        # a request holds a slot from before it is sent until the main thread has handled
        # its answer (a CIK stored): so at most max_concurrent CIKs are ever on the wire or
        # waiting in memory, the most a crash can lose, however slow the disk
        self._slots = threading.Semaphore(config.max_concurrent)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        if urlsplit(config.url).scheme.lower() == "http":
            log.warning(
                "exosite.url %s is plain HTTP: CIKs cross the network unencrypted "
                "(meant for a local simulator only)",
                config.url,
            )
        self._workers = [
            threading.Thread(target=self._work, name=f"exosite-{i}", daemon=True)
            for i in range(config.max_concurrent)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, sn: str, vendor: str, model: str) -> None:
        """Queue a request; once :meth:`close` was called it is reported unsent at once."""
        with self._submit_lock:
            if not self._stop.is_set():
                self._jobs.put((sn, vendor, model))
                return
        self._deliver(ActivationAnswered(sn, Failed(NOT_SENT)))

    def handled(self, answer: ActivationAnswered) -> None:
        """The main thread has carried out ``answer``: its worker may send another request."""
        if answer.outcome != Failed(NOT_SENT):
            self._slots.release()

    def reconfigure(self, config: ExositeConfig) -> None:
        """Take a reloaded configuration: its timeout and rate apply to the next request."""
        self._config = config
        self._limiter.set_rate(config.max_rate)

    def in_flight(self) -> int:
        with self._busy_lock:
            return self._busy

    def pause(self) -> None:
        """Start no new request until :meth:`resume` (requests on the wire go on)."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def close(self, timeout: float) -> None:
        """Stop: requests on the wire finish (or time out); queued ones are reported unsent.

        Every job queued before this call lies ahead of the workers' stop
        markers, so each is answered exactly once; ``timeout`` bounds only the
        wait for the requests on the wire. Calling it again just waits again.
        """
        with self._submit_lock:
            if not self._stop.is_set():
                self._stop.set()
                self._open.set()
                for _ in self._workers:
                    self._jobs.put(None)
                    self._slots.release()  # a worker waiting for a slot sees the stop
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        with requests.Session() as session:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                sn, vendor, model = job
                self._slots.acquire()
                if not self._gate() or not self._limiter.wait(self._stop):
                    self._slots.release()
                    self._deliver(ActivationAnswered(sn, Failed(NOT_SENT)))
                    continue
                with self._busy_lock:
                    self._busy += 1
                log.debug("node %s: activation request sent to %s", sn, self._url)
                try:
                    outcome = self._post(session, sn, vendor, model)
                except Exception as exc:  # a worker must answer every job it took
                    log.exception("node %s: activation request failed unexpectedly", sn)
                    outcome = Failed(f"internal error: {type(exc).__name__}")
                finally:
                    with self._busy_lock:
                        self._busy -= 1
                self._deliver(ActivationAnswered(sn, outcome))

    def _gate(self) -> bool:
        """Wait while paused (closing opens the gate); False once the client is stopping."""
        self._open.wait()
        return not self._stop.is_set()

    def _post(self, session: requests.Session, sn: str, vendor: str, model: str) -> Outcome:
        form = request_form(self._config, vendor, model, sn)
        try:
            response = session.post(
                self._url,
                data=form,
                headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "text/plain"},
                timeout=self._config.timeout,
                verify=self._verify,
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.RequestException as exc:
            return self._failure(exc)
        with response:
            body = bytearray()
            # a 200 is read byte by byte, so a connection lost mid-body keeps what arrived
            chunk_size = 1 if response.status_code == 200 else 4096
            try:
                for chunk in response.iter_content(chunk_size=chunk_size):
                    body += chunk
            except requests.exceptions.RequestException as exc:
                if response.status_code == 200 and not body:
                    log.error(  # noqa: TRY400 (the cause is in the outcome; no traceback)
                        "node %s: Exosite answered 200 but the connection broke before "
                        "any of the CIK arrived; the CIK is probably lost",
                        sn,
                    )
                if response.status_code != 200:
                    return self._failure(exc)
                if not body:
                    failed = self._failure(exc)
                    return Failed(failed.error, 200, maybe_delivered=True)
                # the 200 is in: whatever of the CIK arrived is kept, never dropped
                return Issued(_issued(bytes(body)).cik, well_formed=False)
        return classify(response.status_code, bytes(body))

    def _failure(self, exc: requests.exceptions.RequestException) -> Failed:
        text = describe(exc, self._config.timeout)
        return Failed(text, maybe_delivered=_maybe_delivered(exc))


def describe(exc: requests.exceptions.RequestException, timeout: float) -> str:
    """A requests error in a line, for a log or an answer; never a header value or a body."""
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "request error: a header value was refused (not shown)"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {_innermost(exc)}"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timeout after {timeout:g} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection error: {_innermost(exc)}"
    return f"request error: {_innermost(exc)}"


def _maybe_delivered(exc: requests.exceptions.RequestException) -> bool:
    """Whether the request may have reached Exosite (and a CIK been issued) before it failed.

    Only a failure to connect at all (DNS, refused, connect timeout, TLS
    handshake) proves that Exosite never saw the request.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        return True
    cause: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if cause is None:
            break
        if isinstance(cause, urllib3.exceptions.NewConnectionError | socket.gaierror):
            return False
        reason = getattr(cause, "reason", None)
        cause = (
            reason if isinstance(reason, BaseException) else (cause.__cause__ or cause.__context__)
        )
    return True


def _innermost(exc: BaseException) -> str:
    """The innermost cause of a requests error, in a line."""
    for _ in range(_CHAIN_LIMIT):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
