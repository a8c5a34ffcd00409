"""The HTTP exchange of one activation request, on the standard library's http.client.

Each Exosite worker owns one :class:`Connection`, kept open between requests
while the server allows it (HTTP/1.1 keep-alive), so a storm of activations
costs one TCP and TLS handshake per worker rather than one per request. The
answer of a 200 is read as it arrives and every byte that arrived is returned,
even when the connection breaks or times out before the body is complete.

Failures are :class:`TransportError`; ``reached`` tells whether the request may
have reached the server. Only a failure to connect (name lookup, refused,
connect timeout, TLS handshake, a proxy refusing the tunnel) proves it did not.

Where the requests go, and through which proxy, is an
:class:`~gatewayd.adapters.endpoint.Endpoint`: HTTPS through a proxy goes in a CONNECT
tunnel, plain HTTP in absolute form.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from gatewayd import __version__
from gatewayd.adapters import cutoff
from gatewayd.adapters.endpoint import Endpoint

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
        """POST ``form`` and read the answer, all within ``timeout``; raises
        :class:`TransportError`. An answer the deadline cut short is ``broken``."""
        with cutoff.armed(timeout) as deadline:
            try:
                answer = self._exchange(form, deadline)
            except TransportError as exc:
                if deadline.passed:
                    raise TransportError(_overdue(timeout), reached=exc.reached) from exc
                raise
        if deadline.passed:  # it passed as the exchange ended: its socket may be shut down
            self.close()
        return answer

    def _exchange(self, form: dict[str, str], deadline: cutoff.Deadline) -> Answer:
        timeout = deadline.seconds
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
        conn, reused = self._connection(deadline)
        try:
            conn.request("POST", target, body, headers)
        except OSError as exc:
            self.close()
            if not reused or deadline.passed:
                raise _failure(exc, timeout, reached=True) from exc
            # the server had closed it: a request whose sending failed was never read
            conn, _ = self._connection(deadline)
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
        delimited = response.length is None and not response.chunked
        if deadline.passed and answer.broken is None and delimited:
            # a body delimited by the end of the connection, which the deadline ended
            answer = Answer(answer.status, answer.body, _overdue(timeout))
        response.close()  # the response, not the connection: it is free for the next request
        if answer.broken is not None or response.will_close or deadline.passed:
            self.close()
        else:
            self._idle_since = time.monotonic()
        return answer

    def _connection(self, deadline: cutoff.Deadline) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, its socket shut down when ``deadline`` passes; True if reused."""
        timeout = deadline.left()
        kept = self._conn
        if kept is not None and self._fresh():
            kept.timeout = timeout
            if kept.sock is not None:
                kept.sock.settimeout(timeout)
            sock = kept.sock
            deadline.attach(lambda: sock)
            return kept, True
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
        deadline.attach(lambda: conn.sock)  # a proxy's tunnel and TLS handshake included
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _failure(exc, deadline.seconds, reached=False) from exc
        sock = conn.sock  # the connection lets go of it when an answer says Connection: close
        deadline.attach(lambda: sock)
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


def _overdue(timeout: float) -> str:
    return f"timeout after {timeout:g} s"


def _failure(exc: BaseException, timeout: float, *, reached: bool) -> TransportError:
    inner = _innermost(exc)
    if isinstance(exc, TimeoutError | socket.timeout) or isinstance(inner, TimeoutError):
        return TransportError(f"timeout after {timeout:g} s", reached=reached)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TransportError(f"TLS error: {_line(exc)}", reached=reached)
    if isinstance(exc, OSError):  # http.client.RemoteDisconnected among them
        return TransportError(f"connection error: {cause_line(exc)}", reached=reached)
    return TransportError(f"request error: {cause_line(exc)}", reached=reached)


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


def cause_line(exc: BaseException) -> str:
    """The innermost cause of an error, in one line, for a log or an answer."""
    return _line(_innermost(exc))
