"""gatewayd's one HTTP client, on requests: activation, the vendor API and any later
Exosite call go through it.

A :class:`Client` holds one of requests' adapters, so one connection kept alive
between requests (one client per worker thread). Proxies (``https_proxy``,
``http_proxy``, ``all_proxy`` and ``no_proxy``, CIDR entries included) are
requests' own reading of the environment, done once per origin; the CA file (else the
system's CAs) is the TLS context's, and TLS below 1.2 is refused. Each request has one deadline
for the whole exchange (:mod:`gatewayd.adapters.cutoff`), however slowly the
server answers. The body is read as bytes as it arrives, never decoded.

Failures are :class:`HttpError`; ``reached`` tells whether the request may have
reached the server: only a failure before a connection was up (name lookup,
refused, connect timeout, a proxy refusing the tunnel, the TLS handshake)
proves it did not. What a failure comes to is told in one line (:func:`describe`),
never quoting a header value, a body or anything else the server sent.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import requests
import urllib3

from gatewayd import __version__
from gatewayd.adapters import cutoff

USER_AGENT: Final = f"gatewayd/{__version__}"
KEEP_IDLE: Final = 4.0
"""A connection idle longer than this is not reused: servers close idle connections
(Apache after 5 s), and a request sent just as the server closes is one that may or
may not have been acted on."""
_CHAIN_LIMIT: Final = 8


class HttpError(Exception):
    """The exchange failed; ``reached``: the request may have reached the server."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True, slots=True)
class Answer:
    """A status and the body that arrived; ``broken`` says why the body is short."""

    status: int
    body: bytes
    broken: str | None = None


def proxy_for(url: str) -> str | None:
    """The proxy requests would use for ``url`` from the environment, None for none.

    Raises ValueError naming the variable when it is no URL; the message never
    quotes it, for it may hold a password.
    """
    proxy = _environ_proxy(url)
    if proxy is None:
        return None
    try:
        parsed = urllib3.util.parse_url(proxy if "://" in proxy else f"http://{proxy}")
    except urllib3.exceptions.LocationParseError:
        parsed = None
    if parsed is None or not parsed.host:
        scheme = url.partition(":")[0].lower()
        raise ValueError(f"{scheme}_proxy (or all_proxy) in the environment is not a proxy URL")
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or 80}"


def _environ_proxy(url: str) -> str | None:
    """requests' reading of the proxy variables for ``url`` (``no_proxy`` included)."""
    proxy: str | None = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    return proxy


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The context of every TLS connection: the configured CA file (else the system's),
    TLS 1.2 at least. Raises OSError or ssl.SSLError for a CA file that cannot be read."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # urllib3 matches the name itself (an IP address too, which OpenSSL's check would
    # need passed differently), as in the contexts it makes: the certificate is still
    # verified, and a name it does not carry refused
    context.check_hostname = False
    return context


class Client:
    """One connection: requests one at a time, each within its deadline.

    requests' adapter (:class:`gatewayd.adapters.cutoff.Adapter`) keeps the
    connection pools, direct or through a proxy (its credentials, CONNECT for
    HTTPS); the pool of an origin is chosen once, and each exchange is that pool's
    ``urlopen``, as in the adapter's ``send``. Preparing a requests ``Request``,
    merging settings, hooks and cookies, none of which gatewayd uses, cost 0.75 ms
    of CPU per activation request through ``Session.request``, against 0.24 ms this
    way. The TLS context verifies the server (:func:`tls_context`).
    """

    def __init__(
        self,
        ca_file: Path | None = None,
        *,
        context: ssl.SSLContext | None = None,
        max_body: int = 64 * 1024,
    ) -> None:
        """``context``: a TLS context made by :func:`tls_context` for ``ca_file``, to share
        one between clients (it is made here otherwise)."""
        self._max_body = max_body
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Accept": "*/*",
            "Connection": "keep-alive",
        }
        self._adapter = cutoff.Adapter(context or tls_context(ca_file))
        self._pools: dict[str, tuple[urllib3.HTTPConnectionPool, bool]] = {}
        self._idle_since = 0.0

    def close(self) -> None:
        """Close the connections; the next request opens new ones."""
        self._adapter.close()
        self._pools.clear()

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """One exchange within ``timeout``; raises :class:`HttpError`. An answer the
        deadline cut short is ``broken``. The body is ``form``, encoded, or ``body`` as
        given (its Content-Type among ``headers``)."""
        if time.monotonic() - self._idle_since > KEEP_IDLE:
            self.close()  # its connections; new ones are opened
        with cutoff.armed(timeout) as deadline:
            try:
                payload = body if form is None else urlencode(list(form.items())).encode()
                answer = self._exchange(method, url, timeout, payload, form, headers)
            except HttpError as exc:
                if deadline.passed:
                    raise HttpError(overdue(timeout), reached=exc.reached) from exc
                raise
        if deadline.passed or answer.broken is not None:
            self.close()  # its socket may be shut down: never reused
        self._idle_since = time.monotonic()
        return answer

    def _exchange(
        self,
        method: str,
        url: str,
        timeout: float,
        payload: bytes | None,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Answer:
        try:
            pool, target = self._pool(url)
            response = pool.urlopen(
                method,
                target,
                body=payload,
                headers=self._headers_for(form, headers),
                retries=False,  # never sent twice: an activation is not idempotent
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # requests' errors are OSErrors
            raise HttpError(describe(exc, timeout), reached=_reached()) from exc
        try:
            answer = self._read(response, timeout)
        finally:
            response.release_conn()
        delimited = response.length_remaining is None and not response.chunked
        deadline = cutoff.current()
        if deadline is not None and deadline.passed and (answer.broken or delimited):
            # cut short by the deadline (a body delimited by the end of the connection
            # ends there, cut or not)
            return Answer(answer.status, answer.body, overdue(timeout))
        return answer

    def _headers_for(
        self, form: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> Mapping[str, str]:
        if form is None and headers is None:
            return self._headers
        merged = {**self._headers, **(headers or {})}
        if form is not None and not any(k.lower() == "content-type" for k in merged):
            merged["Content-Type"] = "application/x-www-form-urlencoded"
        return merged

    def _pool(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The connection pool for ``url``'s origin, and the request target: the path, or
        the whole URL for plain HTTP through a proxy."""
        parsed = urllib3.util.parse_url(url)
        origin = f"{parsed.scheme}://{parsed.netloc}"
        found = self._pools.get(origin)
        if found is None:
            manager = self._adapter.manager_for(_environ_proxy(url))
            pool = manager.connection_from_url(origin)
            # a proxy for plain HTTP is sent the whole URL (a SOCKS proxy is no ProxyManager)
            found = (pool, isinstance(manager, urllib3.ProxyManager) and parsed.scheme == "http")
            self._pools[origin] = found
        pool, forwarded = found
        if forwarded:
            return pool, f"{origin}{parsed.request_uri}"
        return pool, parsed.request_uri

    def _read(self, response: urllib3.BaseHTTPResponse, timeout: float) -> Answer:
        """The body as it arrives, so nothing that arrived is lost when the rest never
        comes (urllib3 1.26 returns a partial read whole; 2.3 and later have read1)."""
        read = getattr(response, "read1", None) or response.read
        body = bytearray()
        broken = None
        try:
            while len(body) < self._max_body:
                chunk = read(self._max_body - len(body), decode_content=False)
                if not chunk:
                    break
                body += chunk
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            broken = describe(exc, timeout)
        else:
            if len(body) >= self._max_body:
                broken = f"request error: the answer is longer than {self._max_body} bytes"
            elif response.length_remaining:
                broken = (
                    f"connection error: the answer ended {response.length_remaining} bytes short"
                )
        return Answer(response.status, bytes(body), broken)


def _reached() -> bool:
    deadline = cutoff.current()
    return deadline is None or deadline.connected


def overdue(timeout: float) -> str:
    """What a request cut by its deadline comes to."""
    return f"timeout after {timeout:g} s"


def describe(exc: BaseException, timeout: float) -> str:
    """An HTTP error in a line, for a log or an answer; never a header value or a body."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError in 1.26
        return f"connection error: {cause_line(exc)}"
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return f"TLS error: {cause_line(exc)}"
    if isinstance(_innermost(exc), TimeoutError) or isinstance(
        exc, urllib3.exceptions.TimeoutError | TimeoutError
    ):
        return overdue(timeout)
    if isinstance(exc, OSError | urllib3.exceptions.HTTPError):
        return f"connection error: {cause_line(exc)}"
    return f"request error: {cause_line(exc)}"


def _innermost(exc: BaseException) -> BaseException:
    for _ in range(_CHAIN_LIMIT):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def cause_line(exc: BaseException) -> str:
    """The innermost cause of an error, in one line, for a log or an answer. Only an error
    of the system (a socket, TLS, a proxy's refusal) is quoted: one of parsing an answer
    (a status line, a chunk size) may quote what the server sent, a CIK among it, so
    only its kind is named."""
    inner = _innermost(exc)
    if not isinstance(inner, OSError):
        return f"the answer could not be read ({type(inner).__name__})"
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:200]
