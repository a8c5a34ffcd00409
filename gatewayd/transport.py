"""The HTTP exchange of one activation request, on the standard library's http.client.

Each Exosite worker owns one :class:`Connection`, kept open between requests
while the server allows it (HTTP/1.1 keep-alive), so a storm of activations
costs one TCP and TLS handshake per worker rather than one per request. The
answer of a 200 is read as it arrives and every byte that arrived is returned,
even when the connection breaks or times out before the body is complete.

Failures are :class:`TransportError`; ``reached`` tells whether the request may
have reached the server. Only a failure to connect (name lookup, refused,
connect timeout, TLS handshake, a proxy refusing the tunnel) proves it did not.

A proxy is taken from the environment once, as curl and requests read it
(``https_proxy``, ``http_proxy``, ``no_proxy``): HTTPS goes through a CONNECT
tunnel, plain HTTP in absolute form.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, unquote, urlencode, urlsplit

from gatewayd import __version__

MAX_BODY: Final = 64 * 1024
"""At most this much of an answer is read; a CIK is 40 bytes."""
KEEP_IDLE: Final = 4.0
"""A connection idle longer than this is not reused: servers close idle connections
(Apache after 5 s), and a request sent just as the server closes is one that may or
may not have been acted on."""
USER_AGENT: Final = f"gatewayd/{__version__}"
_CHAIN_LIMIT: Final = 8


class TransportError(Exception):
    """The exchange failed; ``reached``: the request may have reached the server."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True, slots=True)
class Answer:
    """A status line and the body that arrived; ``broken`` says why the body is short."""

    status: int
    body: bytes
    broken: str | None = None


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.hostname is None:
            raise ValueError(f"proxy {url!r} names no host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the requests go: a URL, how it is reached, and its TLS settings."""

    scheme: str
    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None
    proxy: Proxy | None

    @classmethod
    def from_url(
        cls, url: str, ca_file: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Endpoint:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"} or parts.hostname is None:
            raise ValueError(f"not an http or https URL: {url!r}")
        tls = None
        if scheme == "https":
            tls = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname, port, parts.path or "/", tls, _proxy(parts, environ))

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _proxy(parts: SplitResult, environ: Mapping[str, str] | None) -> Proxy | None:
    if environ is None:
        found = urllib.request.getproxies_environment()
    else:
        found = {
            name.lower().removesuffix("_proxy"): value
            for name, value in environ.items()
            if value and name.lower().endswith("_proxy")
        }
    url = found.get(parts.scheme.lower())
    host = parts.hostname or ""
    if not url or _bypassed(host, parts.port, found.get("no", "")):
        return None
    return Proxy.from_url(url)


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``*``, or names and ``name:port``, commas between) spares the host."""
    host = host.lower()
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        if entry == "*":
            return True
        name, _, entry_port = entry.partition(":")
        name = name.lstrip(".")
        if not name or (entry_port and entry_port != str(port)):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class Connection:
    """One worker's connection: opened on demand, reused while fresh, closed on any doubt."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._conn: http.client.HTTPConnection | None = None
        self._idle_since = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post_form(self, form: dict[str, str], timeout: float) -> Answer:
        """POST ``form`` and read the answer; raises :class:`TransportError`."""
        body = urlencode(form).encode("ascii")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "text/plain",
            "User-Agent": USER_AGENT,
        }
        endpoint = self._endpoint
        target = endpoint.path
        if endpoint.proxy is not None and endpoint.tls is None:
            target = f"{endpoint.origin}{endpoint.path}"
            if endpoint.proxy.authorization:
                headers["Proxy-Authorization"] = endpoint.proxy.authorization
        conn, reused = self._connection(timeout)
        try:
            conn.request("POST", target, body, headers)
        except OSError as exc:
            self.close()
            if not reused:
                raise _failure(exc, timeout, reached=True) from exc
            # the server had closed it: a request whose sending failed was never read
            conn, _ = self._connection(timeout)
            try:
                conn.request("POST", target, body, headers)
            except OSError as again:
                self.close()
                raise _failure(again, timeout, reached=True) from again
        try:
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _failure(exc, timeout, reached=True) from exc
        answer = _read(response, timeout)
        response.close()  # the response, not the connection: it is free for the next request
        if answer.broken is not None or response.will_close:
            self.close()
        else:
            self._idle_since = time.monotonic()
        return answer

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None and self._fresh():
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            return self._conn, True
        self.close()
        endpoint = self._endpoint
        host, port = endpoint.host, endpoint.port
        if endpoint.proxy is not None:
            host, port = endpoint.proxy.host, endpoint.proxy.port
        conn: http.client.HTTPConnection
        if endpoint.tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=endpoint.tls)
            if endpoint.proxy is not None:
                tunnel_headers = {}
                if endpoint.proxy.authorization:
                    tunnel_headers["Proxy-Authorization"] = endpoint.proxy.authorization
                conn.set_tunnel(endpoint.host, endpoint.port, headers=tunnel_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _failure(exc, timeout, reached=False) from exc
        self._conn = conn
        return conn, False

    def _fresh(self) -> bool:
        """Idle for a short while, and the server has neither closed it nor sent anything."""
        conn = self._conn
        if conn is None or conn.sock is None:
            return False
        if time.monotonic() - self._idle_since > KEEP_IDLE:
            return False
        try:
            readable, _, _ = select.select([conn.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


def _read(response: http.client.HTTPResponse, timeout: float) -> Answer:
    """The body as it arrives, one system call at a time, so nothing that arrived is lost."""
    body = bytearray()
    broken = None
    try:
        while len(body) < MAX_BODY:
            chunk = response.read1(MAX_BODY - len(body))
            if not chunk:
                break
            body += chunk
    except (OSError, http.client.HTTPException) as exc:
        broken = str(_failure(exc, timeout, reached=True))
    else:
        if len(body) >= MAX_BODY:
            broken = f"request error: the answer is longer than {MAX_BODY} bytes"
        elif response.length:
            broken = f"connection error: the answer ended {response.length} bytes short"
    return Answer(response.status, bytes(body), broken)


def _failure(exc: BaseException, timeout: float, *, reached: bool) -> TransportError:
    inner = _innermost(exc)
    if isinstance(exc, TimeoutError | socket.timeout) or isinstance(inner, TimeoutError):
        return TransportError(f"timeout after {timeout:g} s", reached=reached)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TransportError(f"TLS error: {_line(exc)}", reached=reached)
    if isinstance(exc, OSError):  # http.client.RemoteDisconnected among them
        return TransportError(f"connection error: {_line(inner)}", reached=reached)
    return TransportError(f"request error: {_line(inner)}", reached=reached)


def _innermost(exc: BaseException) -> BaseException:
    for _ in range(_CHAIN_LIMIT):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def _line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
