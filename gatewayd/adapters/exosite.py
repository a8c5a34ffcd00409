"""The Exosite provisioning client: bounded worker threads, each with one connection.

Each request runs on one of ``max_concurrent`` worker threads, after taking a
slot from a rate limiter that lets at most ``max_rate`` requests start per
second. Every answer, and every failure, is classified into an outcome
(:mod:`gatewayd.core.events`) and handed to ``deliver``, which puts it on the
daemon's queue. Each worker has its own :class:`gatewayd.adapters.http.Client`;
its errors never leave this module.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from gatewayd.adapters import logs, redaction
from gatewayd.adapters.ratelimit import RateLimiter
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.actions import Activate
from gatewayd.core.events import (
    ActivationAnswered,
    CikChecked,
    Failed,
    Issued,
    Outcome,
    Refused,
    Verdict,
)
from gatewayd.core.secret import Secret, cik_shape

if TYPE_CHECKING:
    import ssl

    from gatewayd.adapters.http import Client
    from gatewayd.adapters.vendor import VendorClient

log = logging.getLogger(__name__)

ACTIVATE_PATH: Final = "/provision/activate"
NOT_SENT: Final = "not sent: gatewayd is stopping"


MAYBE_DELIVERED: Final = frozenset({500, 502, 504})
"""Answers a proxy or load balancer gives when Exosite may have acted on the request."""
_HEADERS: Final = {
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Accept": "text/plain",
}


def classify(status: int, body: bytes, broken: str | None = None) -> Outcome:
    """Map an HTTP answer to an outcome, per the table in DESIGN.md; ``broken`` says why
    the body is incomplete (the connection broke, or it ended short of its length)."""
    if 200 <= status < 300:
        return issued(status, body, broken)
    maybe = broken is not None or status in MAYBE_DELIVERED
    if status == 429 or status >= 500:
        return Failed(broken or f"HTTP {status}", status, maybe_delivered=maybe)
    if 400 <= status < 500:
        return Refused(status)
    return Failed(broken or f"unexpected HTTP {status}", status, maybe_delivered=True)


def issued(status: int, body: bytes, broken: str | None = None) -> Issued:
    """A 2xx body is never dropped: one that is not a complete CIK is kept as received,
    with what is wrong with it.

    Nothing is stripped or re-encoded away: a body that is not valid ASCII is
    decoded as Latin-1, which maps each byte to one character and back.
    """
    text = body.decode("latin-1")
    cik = Secret(text)
    redaction.remember_cik(Secret(text.strip()))  # a CIK with a newline after it too
    return Issued(cik, _problem(status, text, broken))


def _problem(status: int, text: str, broken: str | None) -> str | None:
    if broken is not None:
        return f"{len(text)} bytes arrived before the answer broke off ({broken})"
    if status != 200:
        return f"HTTP {status}, not 200"
    return cik_shape(text)


def activation_url(config: ExositeConfig) -> str:
    return config.url.rstrip("/") + ACTIVATE_PATH


def request_form(config: ExositeConfig, vendor: str, model: str, sn: str) -> dict[str, str]:
    """The form body of an activation request, in the configured API's form."""
    if config.api == "murano":
        return {"id": sn}
    return {"vendor": vendor, "model": model, "sn": sn}


class ExositeClient:
    """Sends activation requests without blocking the caller."""

    def __init__(
        self,
        config: ExositeConfig,
        deliver: Callable[[ActivationAnswered | CikChecked], None],
        vendor: VendorClient | None = None,
    ) -> None:
        """``vendor``: the vendor API client that proves whose a CIK is (None without a
        vendor token)."""
        self._config = config
        self._deliver = deliver
        self._vendor = vendor
        self._url = activation_url(config)
        self._tls: ssl.SSLContext | None = None
        self._setup = threading.Lock()
        self._jobs: queue.PriorityQueue[_Queued] = queue.PriorityQueue()
        self._order = itertools.count()
        self._stop = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._limiter = RateLimiter(config.max_rate)
        # a request holds a slot from before it is sent until the main thread has carried
        # out its answer (its CIK flushed): with max_concurrent requests on the wire, at
        # most as many answers wait for the disk, so at most 2 x max_concurrent CIKs are
        # ever on the wire or in memory (the most a crash can lose), however slow the disk
        self._slots = threading.Semaphore(2 * config.max_concurrent)
        self._submit_lock = threading.Lock()
        if self._url.lower().startswith("http:"):
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
        self._queue(Activate(sn, vendor, model))

    def check(self, sn: str, model: str, cik: Secret, *, owner: bool) -> None:
        """Queue a check of ``cik`` as ``sn``'s (``owner``: that it is ``sn``'s own;
        :mod:`gatewayd.adapters.cikcheck`), answered with a :class:`CikChecked`. It takes a
        worker and a slot of the rate as a request does, behind every activation queued."""
        self._queue(_Check(sn, model, cik, owner))

    def _queue(self, job: _Job) -> None:
        with self._submit_lock:
            if not self._stop.is_set():
                rank = _CHECK if isinstance(job, _Check) else _ACTIVATION
                self._jobs.put(_Queued(rank, next(self._order), job))
                return
        self._deliver(_unsent(job))

    def handled(self, answer: ActivationAnswered) -> None:
        """The main thread has carried out ``answer``: its worker may send another request."""
        if answer.outcome != Failed(NOT_SENT):
            self._slots.release()

    def reconfigure(self, config: ExositeConfig) -> None:
        """Take a reloaded configuration: its timeout and rate apply to the next request."""
        self._config = config
        self._limiter.set_rate(config.max_rate)

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
                    self._jobs.put(_Queued(_STOP, next(self._order), None))
                    self._slots.release()  # a worker waiting for a slot sees the stop
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        client: Client | None = None
        try:
            while True:
                job = self._jobs.get().job
                if job is None:
                    return
                sn = job.sn
                self._slots.acquire()
                if not self._gate() or not self._limiter.wait(self._stop):
                    self._slots.release()
                    self._deliver(_unsent(job))
                    continue
                if isinstance(job, _Check):
                    client = client or self._client()
                    verdict, said = self._check(client, job)
                    self._slots.release()  # no CIK comes of it: nothing to wait for
                    self._deliver(CikChecked(sn, job.cik, verdict, said))
                    continue
                log.debug(
                    "node %s: activation request sent to %s", sn, self._url, extra=logs.about(sn)
                )
                form = request_form(self._config, job.vendor, job.model, sn)
                try:
                    client = client or self._client()
                    answer = client.request(
                        "POST", self._url, form=form, headers=_HEADERS, timeout=self._config.timeout
                    )
                    outcome = classify(answer.status, answer.body, answer.broken)
                except Exception as exc:  # noqa: BLE001 (a worker must answer every job it took)
                    outcome = _failure(exc, sn)
                self._deliver(ActivationAnswered(sn, outcome))
        finally:
            if client is not None:
                client.close()

    def _check(self, client: Client, job: _Check) -> tuple[Verdict, str]:
        from gatewayd.adapters import cikcheck  # noqa: PLC0415 (loaded with the client)

        sn = job.sn
        log.debug("node %s: CIK check sent", sn, extra=logs.about(sn))
        try:
            return cikcheck.check(
                client,
                self._config,
                job.cik,
                sn=sn,
                model=job.model,
                vendor=self._vendor,
                owner=job.owner,
                pace=lambda: self._limiter.wait(self._stop),  # its second request
            )
        except Exception as exc:
            log.exception("node %s: CIK check failed unexpectedly", sn, extra=logs.about(sn))
            return Verdict.UNKNOWN, f"internal error: {type(exc).__name__}"

    def prepare(self) -> None:
        """Load the HTTP client (requests), make the TLS context and say the proxy, once:
        now, or else with the first request (a gateway whose nodes are all activated need
        never load it)."""
        from gatewayd.adapters import http  # noqa: PLC0415 (see above)

        with self._setup:
            if self._tls is None:
                self._tls = http.tls_context(self._config.ca_file)
                proxy = http.proxy_for(self._url)
                if proxy is not None:
                    log.info("exosite: requests go through the proxy %s", proxy)

    def _client(self) -> Client:
        """This worker's client, made for its first request."""
        from gatewayd.adapters import http  # noqa: PLC0415 (loaded by prepare)

        self.prepare()
        return http.Client(self._config.ca_file, context=self._tls)

    def _gate(self) -> bool:
        """Wait while paused (closing opens the gate); False once the client is stopping."""
        self._open.wait()
        return not self._stop.is_set()


@dataclass(frozen=True, slots=True)
class _Check:
    """A check of a node's CIK, queued as an activation request is (``owner``: that it is
    the serial's own)."""

    sn: str
    model: str
    cik: Secret
    owner: bool


_Job = Activate | _Check
_ACTIVATION, _CHECK, _STOP = 0, 1, 2
"""The order jobs are taken in: activations, then checks, then each worker's stop
marker, behind every job queued before :meth:`ExositeClient.close`."""


@dataclass(order=True, frozen=True, slots=True)
class _Queued:
    rank: int
    number: int
    job: _Job | None = field(compare=False)


def _unsent(job: _Job) -> ActivationAnswered | CikChecked:
    if isinstance(job, _Check):
        return CikChecked(job.sn, job.cik, Verdict.UNKNOWN, NOT_SENT)
    return ActivationAnswered(job.sn, Failed(NOT_SENT))


def _failure(exc: Exception, sn: str) -> Failed:
    """What a request that raised ``exc`` came to; one the HTTP client did not expect is
    logged with its traceback, and may have reached Exosite."""
    from gatewayd.adapters.http import HttpError  # noqa: PLC0415 (loaded with the client)

    if isinstance(exc, HttpError):
        return Failed(str(exc), maybe_delivered=exc.reached)
    log.error(
        "node %s: activation request failed unexpectedly",
        sn,
        exc_info=exc,
        extra=logs.about(sn),
    )
    return Failed(f"internal error: {type(exc).__name__}", maybe_delivered=True)
