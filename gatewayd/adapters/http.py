"""gatewayd's one HTTP client, on requests: activation, the vendor API and any later
Exosite call go through it.

A :class:`Client` holds one ``requests.Session``, so one connection kept alive
between requests (one client per worker thread). Proxies (``https_proxy``,
``http_proxy``, ``all_proxy`` and ``no_proxy``, CIDR entries included) are
requests' own reading of the environment, done once per URL; the CA file is
requests' ``verify``; TLS below 1.2 is refused. Each request has one deadline
for the whole exchange (:mod:`gatewayd.adapters.cutoff`), however slowly the
server answers. The body is read as bytes as it arrives, never decoded.

Failures are :class:`HttpError`; ``reached`` tells whether the request may have
reached the server: only a failure before a connection was up (name lookup,
refused, connect timeout, a proxy refusing the tunnel, the TLS handshake)
proves it did not.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests
import urllib3
from requests.adapters import HTTPAdapter

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
    """One session: requests one at a time, each within its deadline."""

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
        self._session = requests.Session()
        self._session.trust_env = False  # proxies are read once per URL, below; no .netrc
        self._session.verify = str(ca_file) if ca_file is not None else True
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        adapter = _DeadlineAdapter(context or tls_context(ca_file))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._proxies: dict[str, dict[str, str]] = {}
        self._idle_since = 0.0

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One exchange within ``timeout``; raises :class:`HttpError`. An answer the
        deadline cut short is ``broken``."""
        if time.monotonic() - self._idle_since > KEEP_IDLE:
            self._session.close()  # its connections; the session opens new ones
        with cutoff.armed(timeout) as deadline:
            try:
                answer = self._exchange(method, url, timeout, form, headers)
            except HttpError as exc:
                if deadline.passed:
                    raise HttpError(_overdue(timeout), reached=exc.reached) from exc
                raise
        if deadline.passed or answer.broken is not None:
            self._session.close()  # its socket may be shut down: never reused
        self._idle_since = time.monotonic()
        return answer

    def _exchange(
        self,
        method: str,
        url: str,
        timeout: float,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Answer:
        try:
            response = self._session.request(
                method,
                url,
                data=form,
                headers=headers,
                timeout=timeout,
                proxies=self._proxies_for(url),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.RequestException as exc:
            raise HttpError(describe(exc, timeout), reached=_reached()) from exc
        with response:
            answer = self._read(response, timeout)
            delimited = response.raw.length_remaining is None and not response.raw.chunked
            deadline = cutoff.current()
            if deadline is not None and deadline.passed and (answer.broken or delimited):
                # cut short by the deadline (a body delimited by the end of the connection
                # ends there, cut or not)
                return Answer(answer.status, answer.body, _overdue(timeout))
            return answer

    def _read(self, response: requests.Response, timeout: float) -> Answer:
        """The body as it arrives, so nothing that arrived is lost when the rest never
        comes (urllib3 1.26 returns a partial read whole; 2.3 and later have read1)."""
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
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
            elif raw.length_remaining:
                broken = f"connection error: the answer ended {raw.length_remaining} bytes short"
        return Answer(response.status_code, bytes(body), broken)

    def _proxies_for(self, url: str) -> dict[str, str]:
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        found = self._proxies.get(key)
        if found is None:
            proxy = _environ_proxy(url)
            scheme = origin[0].rstrip(":").lower()
            found = {scheme: proxy} if proxy else {}
            self._proxies[key] = found
        return found


def _reached() -> bool:
    deadline = cutoff.current()
    return deadline is None or deadline.connected


def _overdue(timeout: float) -> str:
    return f"timeout after {timeout:g} s"


def describe(exc: BaseException, timeout: float) -> str:
    """An HTTP error in a line, for a log or an answer; never a header value or a body."""
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "request error: a header value was refused (not shown)"
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError | ssl.SSLError):
        return f"TLS error: {cause_line(exc)}"
    if isinstance(_innermost(exc), TimeoutError) or isinstance(
        exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
    ):
        return _overdue(timeout)
    if isinstance(
        exc, requests.exceptions.ConnectionError | OSError | urllib3.exceptions.HTTPError
    ):
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


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter with gatewayd's TLS context, whose every new socket (to the
    server, or to a proxy) is shut down when the request's deadline passes, and which
    tells the deadline once a connection is up (from then on a failure may come after
    the request reached the server)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)  # never sent twice: an activation is not idempotent

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (requests' own)
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = cutoff.POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:  # noqa: ANN401 (requests' own)
        if not proxy.lower().startswith("socks"):  # SOCKS proxies have pools of their own
            kwargs["ssl_context"] = self._context
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = cutoff.POOLS
        return manager
