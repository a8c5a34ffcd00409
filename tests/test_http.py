"""gatewayd's one HTTP client (activation and the vendor API): TLS checked against the
configured CA, connections kept alive between requests, a proxy taken from the
environment as requests reads it (CONNECT for HTTPS, the absolute form for plain
HTTP, credentials from the proxy URL, ``no_proxy`` with names, ports and CIDR
ranges), and whether a failed request may have reached the server.

A TLS terminator with a certificate for "localhost" stands in front of the
simulator; the proxy is a real tinyproxy process, which logs what it was asked.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import WAIT
from pki import Pki, make_pki

from gatewayd.adapters.exosite import ExositeClient
from gatewayd.adapters.http import Answer, Client, HttpError, proxy_for
from gatewayd.adapters.vendor import SerialState, VendorClient
from gatewayd.config.load import parse
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.errors import ExositeError
from gatewayd.core.events import ActivationAnswered, CikChecked, Issued
from gatewayd.core.secret import Secret
from gatewayd.daemon.wiring import check_exosite
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.processes import Output, free_port

pytestmark = pytest.mark.http

VENDOR = "acme"
MODEL = "thermo-v1"
SERIALS = ("TLS1", "TLS2", "TLS3", "TLS4")
FORM = {"vendor": VENDOR, "model": MODEL}
TOKEN = "tok-http-4471"
PROXY_USER, PROXY_PASSWORD = "gw", "pr0xy-pw"
REQUEST = re.compile(r"Request \(file descriptor \d+\): (.*)")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


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


class Tinyproxy:
    """A tinyproxy process on a free port, asking for a user and password; ``asked()``
    lists the request lines it was sent (CONNECT host:port, or an absolute URL)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        conf = folder / "tinyproxy.conf"
        conf.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\n"
            f"MaxClients 32\nAllow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n"
        )
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        self._process = subprocess.Popen(
            [binary, "-d", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._log = Output("tinyproxy", self._process.stdout, folder / "tinyproxy.log")
        self._log.wait_for(r"Accepting connections")

    @property
    def url(self) -> str:
        return f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{self.port}"

    def asked(self) -> list[str]:
        found = (
            re.search(r"Request \(file descriptor \d+\): (.*)", line) for line in self._log.lines
        )
        return [m.group(1).strip() for m in found if m]

    def wait_asked(self, pattern: str) -> str:
        return self._log.wait_for(rf"Request \(file descriptor \d+\): {pattern}")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(WAIT)
        self._log.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    server = Tinyproxy(tmp_path)
    yield server
    server.stop()


def post(client: Client, url: str, sn: str) -> Answer:
    return client.request("POST", url, form=FORM | {"sn": sn}, timeout=WAIT)


def activate(
    url: str, ca_file: Path | None = None, serials: tuple[str, ...] = SERIALS[:1]
) -> list[Answer]:
    client = Client(ca_file)
    try:
        return [post(client, url, sn) for sn in serials]
    finally:
        client.close()


def exosite(url: str, ca_file: Path | None = None) -> ExositeConfig:
    return ExositeConfig(vendor=VENDOR, model=MODEL, url=url, ca_file=ca_file, max_rate=1000.0)


def activate_with_the_daemons_client(config: ExositeConfig, sn: str) -> ActivationAnswered:
    answers: list[ActivationAnswered] = []
    done = threading.Event()

    def deliver(answer: ActivationAnswered | CikChecked) -> None:
        assert isinstance(answer, ActivationAnswered)
        answers.append(answer)
        client.handled(answer)
        done.set()

    client = ExositeClient(config, deliver)
    try:
        client.submit(sn, VENDOR, MODEL)
        assert done.wait(WAIT)
    finally:
        client.close(timeout=WAIT)
    [answer] = answers
    return answer


# ------------------------------------------------------------------------- TLS


def test_https_with_the_configured_ca_activates(tls_front: Listener, pki: Pki) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    [answer] = activate(url, pki.path("ca.pem"))
    assert answer.status == 200
    assert answer.broken is None
    assert len(answer.body) == 40


def test_a_certificate_from_an_unknown_ca_is_refused_before_anything_is_sent(
    tls_front: Listener, simulator: Simulator
) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    with pytest.raises(HttpError) as caught:
        activate(url)
    assert str(caught.value).startswith("TLS error")
    assert caught.value.reached is False
    assert simulator.registry.total_calls() == 0


def test_a_name_the_certificate_does_not_carry_is_refused(tls_front: Listener, pki: Pki) -> None:
    url = f"https://127.0.0.1:{tls_front.port}/provision/activate"  # the certificate: localhost
    with pytest.raises(HttpError, match="TLS error") as caught:
        activate(url, pki.path("ca.pem"))
    assert caught.value.reached is False


def test_the_client_over_tls_issues_a_cik(tls_front: Listener, pki: Pki) -> None:
    config = exosite(f"https://localhost:{tls_front.port}", pki.path("ca.pem"))
    answer = activate_with_the_daemons_client(config, "TLS1")
    assert isinstance(answer.outcome, Issued)
    assert answer.outcome.well_formed


# ------------------------------------------------------------------ keep-alive


def test_one_connection_serves_request_after_request(tls_front: Listener, pki: Pki) -> None:
    url = f"https://localhost:{tls_front.port}/provision/activate"
    answers = activate(url, pki.path("ca.pem"), SERIALS)
    assert [a.status for a in answers] == [200] * len(SERIALS)
    assert tls_front.accepted == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(simulator: Simulator) -> None:
    hang_ups: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        upstream = socket.create_connection((simulator.host, simulator.port))
        hang_ups.append(conn)
        _pipe(conn, upstream)

    front = Listener(serve)
    client = Client()
    try:
        url = f"http://127.0.0.1:{front.port}/provision/activate"
        first = post(client, url, "TLS1")
        hang_ups[0].shutdown(socket.SHUT_RDWR)  # the server's idle timeout, say
        second = post(client, url, "TLS2")
    finally:
        client.close()
        front.close()
    assert (first.status, second.status) == (200, 200)
    assert front.accepted == 2


# ----------------------------------------------------------------------- proxy


def test_activation_over_https_goes_through_the_proxy_in_a_connect_tunnel(
    tls_front: Listener, pki: Pki, proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    url = f"https://localhost:{tls_front.port}/provision/activate"
    answers = activate(url, pki.path("ca.pem"), SERIALS[:2])
    assert [a.status for a in answers] == [200, 200]
    [tunnel] = proxy.asked()  # one tunnel, kept for both requests, with the credentials
    assert tunnel.startswith(f"CONNECT localhost:{tls_front.port} HTTP/")
    config = exosite(f"https://localhost:{tls_front.port}", pki.path("ca.pem"))
    answer = activate_with_the_daemons_client(config, "TLS3")
    assert isinstance(answer.outcome, Issued)
    assert answer.outcome.well_formed
    assert len(proxy.asked()) == 2


def test_plain_http_goes_to_the_proxy_in_absolute_form(
    simulator: Simulator, proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    url = f"{simulator.url}/provision/activate"
    [answer] = activate(url)
    assert answer.status == 200
    assert proxy.asked() == [f"POST {url} HTTP/1.1"]


def test_the_vendor_api_goes_through_the_same_proxy_unless_no_proxy_spares_it(
    simulator: Simulator, proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CIDR entry of no_proxy spares an address in its range, for both kinds of call."""
    simulator.registry.set_vendor_token(TOKEN)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    vendor = VendorClient(exosite(simulator.url), Secret(TOKEN))
    assert vendor.status(MODEL, "TLS1").state is SerialState.NOT_ACTIVATED
    proxy.wait_asked(f"GET {simulator.url}/provision/manage/model/{MODEL}/TLS1 HTTP/1.1")
    monkeypatch.setenv("no_proxy", "example.com,127.0.0.0/8")
    assert vendor.status(MODEL, "TLS2").state is SerialState.NOT_ACTIVATED
    answer = activate_with_the_daemons_client(exosite(simulator.url), "TLS3")
    assert isinstance(answer.outcome, Issued)
    assert len(proxy.asked()) == 1
    assert simulator.registry.calls("TLS3") == 1


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("localhost", True),
        ("example.com,.localhost", True),
        ("*", True),
        ("localhost:8443", True),
        ("localhost:1", False),
        ("otherhost", False),
        ("", False),
    ],
)
def test_no_proxy_names_the_hosts_reached_directly(
    no_proxy: str, bypassed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    assert (proxy_for("https://localhost:8443/provision/activate") is None) is bypassed


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [("10.1.0.0/16", True), ("10.0.0.0/8", True), ("10.2.0.0/16", False), ("10.1.2.3", True)],
)
def test_no_proxy_takes_address_ranges(
    no_proxy: str, bypassed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    assert (proxy_for("https://10.1.2.3/provision/activate") is None) is bypassed


@pytest.mark.parametrize("upper_first", [True, False])
def test_the_lower_case_variable_wins(upper_first: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [
        ("HTTPS_PROXY", "http://upper.invalid:1"),
        ("https_proxy", "http://u%40x:p@lower:8080"),
    ]
    for name, value in pairs if upper_first else reversed(pairs):
        monkeypatch.setenv(name, value)
    assert proxy_for("https://m2.exosite.com/provision/activate") == "http://lower:8080"


def test_a_proxy_that_refuses_the_tunnel_is_a_failure_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    refusing = Listener(refuse)
    try:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{refusing.port}")
        with pytest.raises(HttpError) as caught:
            activate("https://localhost:9/provision/activate")
    finally:
        refusing.close()
    assert caught.value.reached is False
    assert "403" in str(caught.value)


def test_a_proxy_without_the_credentials_refuses_and_nothing_is_sent(
    simulator: Simulator, proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    [answer] = activate(f"{simulator.url}/provision/activate")
    assert answer.status == 407
    assert simulator.registry.total_calls() == 0


def test_a_refused_connection_is_reported_as_not_sent() -> None:
    port = free_port()
    with pytest.raises(HttpError) as caught:
        activate(f"http://127.0.0.1:{port}/provision/activate")
    assert caught.value.reached is False
    assert str(caught.value).startswith("connection error")
    assert "refused" in str(caught.value).lower()


@pytest.mark.parametrize(
    "value", ["http://user:s3cret-pw@:3128", "http://user:s3cret-pw@host:port"]
)
def test_a_bad_proxy_variable_is_named_and_its_password_never_shown(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", value)
    config = parse('[gateway]\nid = "gw1"\n[exosite]\nvendor = "acme"\nmodel = "m"\n')
    with pytest.raises(ExositeError, match="https_proxy in the environment") as caught:
        check_exosite(config)
    assert "s3cret-pw" not in str(caught.value)
    with pytest.raises(ValueError, match="https_proxy") as raised:
        proxy_for("https://m2.exosite.com/provision/activate")
    assert "s3cret-pw" not in str(raised.value)


SECRET = "zz9f3c2a71be04d8a6c5e1f0b9d7a3c8e2f1a6b4"
"""What a broken server sends where a chunk size or a status line belongs: a CIK, say."""


@pytest.mark.parametrize(
    "answer",
    [
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{SECRET}\r\n".encode(),
        f"{SECRET} 200 OK\r\n\r\n".encode(),
    ],
    ids=["chunk size", "status line"],
)
def test_what_the_server_sent_is_never_quoted_in_an_error(answer: bytes) -> None:
    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    broken = Listener(serve)
    try:
        url = f"http://127.0.0.1:{broken.port}/provision/activate"
        try:
            [got] = activate(url)
        except HttpError as exc:
            said = str(exc)
        else:
            assert got.broken is not None
            said = got.broken
    finally:
        broken.close()
    assert "could not be read" in said
    assert SECRET not in said
    assert SECRET[2:12] not in said
