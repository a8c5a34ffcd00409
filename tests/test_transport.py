"""Activation's HTTP exchange: TLS checked against the configured CA, connections kept
alive between requests, a proxy taken from the environment (CONNECT for HTTPS, the
absolute form for plain HTTP), and no_proxy respected.

A TLS terminator with a certificate for "localhost" stands in front of the
simulator; the proxy is a small relay that records what it was asked.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pki import Pki, make_pki

from gatewayd.adapters.endpoint import Endpoint, Proxy
from gatewayd.adapters.exosite import ExositeClient
from gatewayd.adapters.transport import Connection, TransportError
from gatewayd.config.load import ExositeConfig
from gatewayd.core.events import ActivationAnswered, Issued
from gatewayd.sim import Registry, Simulator

VENDOR = "acme"
MODEL = "thermo-v1"
SERIALS = ("TLS1", "TLS2", "TLS3", "TLS4")
WAIT = 30.0
FORM = {"vendor": VENDOR, "model": MODEL}


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy a to b until a closes, then half-close b."""
    with contextlib.suppress(OSError):
        while data := a.recv(65536):
            b.sendall(data)
    with contextlib.suppress(OSError):
        b.shutdown(socket.SHUT_WR)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    there = threading.Thread(target=_relay, args=(a, b), daemon=True)
    there.start()
    _relay(b, a)
    there.join(WAIT)
    a.close()
    b.close()


@dataclass
class Listener:
    """A TCP listener on localhost that hands each connection to ``serve`` on a thread."""

    serve: Callable[[socket.socket], None]
    sock: socket.socket = field(default_factory=socket.socket)
    accepted: int = 0

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    registry = Registry()
    registry.add_pair(VENDOR, MODEL)
    for sn in SERIALS:
        registry.add(VENDOR, MODEL, sn)
    with Simulator(registry) as sim:
        yield sim


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, [])


@pytest.fixture
def tls_front(simulator: Simulator, pki: Pki) -> Iterator[Listener]:
    """TLS for "localhost" on its port, plain HTTP to the simulator behind it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))

    def serve(conn: socket.socket) -> None:
        try:
            wrapped = context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        _pipe(wrapped, socket.create_connection((simulator.host, simulator.port)))

    listener = Listener(serve)
    yield listener
    listener.close()


@dataclass
class ProxyServer:
    """Asked CONNECT host:port, it tunnels; asked an absolute URL, it forwards as is."""

    asked: list[str] = field(default_factory=list)
    listener: Listener | None = None

    def serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode()
        self.asked.append(request_line)
        method, target, _ = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
        else:
            host_port = target.split("/")[2]
            host, _, port = host_port.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            upstream.sendall(head)
        _pipe(conn, upstream)


@pytest.fixture
def proxy() -> Iterator[ProxyServer]:
    server = ProxyServer()
    server.listener = Listener(server.serve)
    yield server
    server.listener.close()


def proxy_url(server: ProxyServer) -> str:
    assert server.listener is not None
    return f"http://127.0.0.1:{server.listener.port}"


def activate(endpoint: Endpoint, serials: tuple[str, ...] = SERIALS[:1]) -> list[object]:
    connection = Connection(endpoint)
    try:
        return [connection.post_form(FORM | {"sn": sn}, timeout=WAIT) for sn in serials]
    finally:
        connection.close()


# ------------------------------------------------------------------------- TLS


def test_https_with_the_configured_ca_activates(tls_front: Listener, pki: Pki) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    [answer] = activate(Endpoint.from_url(url, pki.path("ca.pem"), environ={}))
    assert getattr(answer, "status", None) == 200


def test_a_certificate_from_an_unknown_ca_is_refused_before_anything_is_sent(
    tls_front: Listener, simulator: Simulator
) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    with pytest.raises(TransportError) as caught:
        activate(Endpoint.from_url(url, environ={}))
    assert str(caught.value).startswith("TLS error")
    assert caught.value.reached is False
    assert simulator.registry.total_calls() == 0


def test_a_name_the_certificate_does_not_carry_is_refused(tls_front: Listener, pki: Pki) -> None:
    url = f"https://127.0.0.1:{tls_front.port}/provision/activate"  # the certificate: localhost
    with pytest.raises(TransportError, match="TLS error") as caught:
        activate(Endpoint.from_url(url, pki.path("ca.pem"), environ={}))
    assert caught.value.reached is False


def test_the_client_over_tls_issues_a_cik(tls_front: Listener, pki: Pki) -> None:
    config = ExositeConfig(
        vendor=VENDOR,
        model=MODEL,
        url=f"https://localhost:{tls_front.port}",
        ca_file=pki.path("ca.pem"),
        max_rate=1000.0,
    )
    answers: list[ActivationAnswered] = []
    done = threading.Event()

    def deliver(answer: ActivationAnswered) -> None:
        answers.append(answer)
        client.handled(answer)
        done.set()

    client = ExositeClient(config, deliver)
    try:
        client.submit("TLS1", VENDOR, MODEL)
        assert done.wait(WAIT)
    finally:
        client.close(timeout=WAIT)
    [answer] = answers
    assert isinstance(answer.outcome, Issued)
    assert answer.outcome.well_formed


# ------------------------------------------------------------------ keep-alive


def test_one_connection_serves_request_after_request(tls_front: Listener, pki: Pki) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    answers = activate(Endpoint.from_url(url, pki.path("ca.pem"), environ={}), SERIALS)
    assert [getattr(a, "status", None) for a in answers] == [200] * len(SERIALS)
    assert tls_front.accepted == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(simulator: Simulator) -> None:
    hang_ups: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        upstream = socket.create_connection((simulator.host, simulator.port))
        hang_ups.append(conn)
        _pipe(conn, upstream)

    front = Listener(serve)
    try:
        url = f"http://127.0.0.1:{front.port}/provision/activate"
        connection = Connection(Endpoint.from_url(url, environ={}))
        first = connection.post_form(FORM | {"sn": "TLS1"}, timeout=WAIT)
        hang_ups[0].shutdown(socket.SHUT_RDWR)  # the server's idle timeout, say
        second = connection.post_form(FORM | {"sn": "TLS2"}, timeout=WAIT)
        connection.close()
    finally:
        front.close()
    assert (first.status, second.status) == (200, 200)
    assert front.accepted == 2


# ----------------------------------------------------------------------- proxy


def test_https_goes_through_the_proxy_in_a_connect_tunnel(
    tls_front: Listener, pki: Pki, proxy: ProxyServer
) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    endpoint = Endpoint.from_url(url, pki.path("ca.pem"), environ={"HTTPS_PROXY": proxy_url(proxy)})
    answers = activate(endpoint, SERIALS[:2])
    assert [getattr(a, "status", None) for a in answers] == [200, 200]
    [tunnel] = proxy.asked  # one tunnel, kept for both requests
    assert tunnel.startswith(f"CONNECT localhost:{tls_front.port} HTTP/")


def test_plain_http_goes_to_the_proxy_in_absolute_form(
    simulator: Simulator, proxy: ProxyServer
) -> None:
    url = f"{simulator.url}/provision/activate"
    endpoint = Endpoint.from_url(url, environ={"http_proxy": proxy_url(proxy)})
    [answer] = activate(endpoint)
    assert getattr(answer, "status", None) == 200
    assert proxy.asked == [f"POST {url} HTTP/1.1"]


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("localhost", True),
        ("example.com,.localhost", True),
        ("*", True),
        ("localhost:1", False),
        ("otherhost", False),
        ("", False),
    ],
)
def test_no_proxy_names_the_hosts_reached_directly(no_proxy: str, bypassed: bool) -> None:
    environ = {"https_proxy": "http://proxy.invalid:3128", "no_proxy": no_proxy}
    endpoint = Endpoint.from_url("https://localhost:8443/provision/activate", environ=environ)
    assert (endpoint.proxy is None) is bypassed


@pytest.mark.parametrize("upper_first", [True, False])
def test_the_lower_case_variable_wins_and_credentials_become_a_header(upper_first: bool) -> None:
    pairs = [
        ("HTTPS_PROXY", "http://upper.invalid:1"),
        ("https_proxy", "http://u%40x:p@lower:8080"),
    ]
    environ = dict(pairs if upper_first else reversed(pairs))
    endpoint = Endpoint.from_url("https://m2.exosite.com/provision/activate", environ=environ)
    assert endpoint.proxy == Proxy("lower", 8080, "Basic dUB4OnA=")  # base64 of "u@x:p"


def test_a_proxy_that_refuses_the_tunnel_is_a_failure_before_anything_is_sent() -> None:
    def refuse(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    refusing = Listener(refuse)
    try:
        environ = {"https_proxy": f"http://127.0.0.1:{refusing.port}"}
        endpoint = Endpoint.from_url("https://localhost:9/provision/activate", environ=environ)
        with pytest.raises(TransportError) as caught:
            activate(endpoint)
    finally:
        refusing.close()
    assert caught.value.reached is False
    assert "403" in str(caught.value)


def test_a_refused_connection_is_reported_as_not_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        activate(Endpoint.from_url(f"http://127.0.0.1:{port}/provision/activate", environ={}))
    assert caught.value.reached is False
    assert str(caught.value).startswith("connection error")
    assert "refused" in str(caught.value).lower()


@pytest.mark.parametrize(
    "proxy_url", ["http://user:s3cret-pw@:3128", "http://user:s3cret-pw@host:port"]
)
def test_a_bad_proxy_variable_is_named_and_its_password_never_shown(proxy_url: str) -> None:
    with pytest.raises(ValueError, match="https_proxy in the environment") as caught:
        Endpoint.from_url(
            "https://m2.exosite.com/provision/activate", environ={"https_proxy": proxy_url}
        )
    assert "s3cret-pw" not in str(caught.value)
