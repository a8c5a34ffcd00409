"""The simulator's HTTP side: a threaded server, a routing table and its endpoints.

An endpoint is a function from a :class:`Request` to a :class:`Response`; it
does no I/O. The request handler reads the request, looks the endpoint up in
:attr:`Simulator.routes`, waits out the response's delay and writes it (or,
for :data:`~gatewayd.sim.registry.DROP`, closes the connection without a word).
The delay counts from the moment the request line arrived, so a latency of
50 ms answers 50 ms after the request, however long the simulator took to read it.

The vendor management API, with header ``X-Exosite-Token: <vendor token>``
(missing or wrong: 401; unknown model or serial: 404)::

    GET  /provision/manage/model/<model>/<sn>
        200 text/plain  <status>,<rid>,<extra>   status: activated, notactivated
                                                 or expired; rid: 40 hex; extra: empty
    POST /provision/manage/model/<model>/<sn>   form body enable=true (else 400)
        205 empty body: the device is pending again, for a fresh 24 h

``<model>`` and ``<sn>`` are percent-decoded path segments.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import parse_qs, unquote, urlsplit

from gatewayd.core.errors import ConfigError
from gatewayd.sim.devices import State, parse_device
from gatewayd.sim.registry import DROP, Answer, Call, Device, Fault, ManageAnswer, Registry

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

TEXT: Final = "text/plain; charset=utf-8"
HTML: Final = "text/html; charset=utf-8"
DRIBBLE_PACE: Final = 0.1
"""Seconds between two bytes of a dribbled answer."""
JSON: Final = "application/json"
FORM: Final = "application/x-www-form-urlencoded"
MAX_BODY: Final = 64 * 1024
HANDLER_TIMEOUT: Final = 10.0
POLL_INTERVAL: Final = 0.05
TOKEN_HEADER: Final = "X-Exosite-Token"  # noqa: S105 (a header name, not a secret)
MANAGE_PATH: Final = re.compile(r"/provision/manage/model/(?P<model>[^/]+)/(?P<sn>[^/]+)")
ONEP_STATUS: Final = MappingProxyType(
    {State.ACTIVATED: "activated", State.PENDING: "notactivated", State.EXPIRED: "expired"}
)
"""The One Platform's word for each device state, in a status answer."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Message
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """An answer to write; ``status`` :data:`DROP` closes the connection instead."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    delay: float = 0.0
    """Seconds from the request's arrival to the answer."""
    cut: int | None = None
    """Send only this many bytes of the body (its full length announced), then hang up."""
    dribble: bool = False
    """Send the status line and headers a byte at a time, and never end them."""

    @classmethod
    def text(cls, status: int, text: str | None = None) -> Self:
        text = responses.get(status, "") if text is None else text
        return cls(status, f"{text}\n".encode())

    @classmethod
    def json(cls, status: int, document: object) -> Self:
        return cls(status, json.dumps(document).encode(), JSON)


Endpoint = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern`` must match the whole path; its named groups become ``Request.params``."""

    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint


class Simulator:
    """Exosite's provisioning API, served on ``host:port`` from a daemon thread.

    It serves as soon as it is constructed; :meth:`stop` (or leaving the
    ``with`` block) closes the listening socket, wakes any answer still waiting
    out its latency (that connection is then dropped) and joins the threads.
    ``murano`` names the (vendor, model) pair that answers the ``id=<sn>`` form.
    """

    def __init__(
        self,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 0,
        murano: tuple[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.murano = murano
        self.routes: tuple[Route, ...] = (
            Route("POST", re.compile(r"/provision/activate"), self._activate),
            Route("GET", MANAGE_PATH, self._serial_status),
            Route("POST", MANAGE_PATH, self._reenable),
            Route("GET", re.compile(r"/_sim/devices"), self._list_devices),
            Route("POST", re.compile(r"/_sim/devices"), self._add_device),
        )
        self._server = _Server((host, port), self.dispatch)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="gatewayd-sim",
            daemon=True,
        )
        self._thread.start()
        log.debug("simulator listening on %s", self.url)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server.stopping.is_set():
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.hang_up()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def dispatch(self, method: str, path: str, headers: Message, body: bytes) -> Response:
        """The response the routing table gives; 404 for an unknown path, 405 for a method."""
        path_known = False
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != method:
                path_known = True
                continue
            return route.endpoint(Request(method, path, headers, body, match.groupdict()))
        return Response.text(405 if path_known else 404)

    def _activate(self, request: Request) -> Response:
        form = _form(request)
        if form is not None and {"vendor", "model", "sn"} <= form.keys():
            sn = form["sn"]
            answer = self.registry.activate((form["vendor"], form["model"]), sn)
        elif form is not None and "id" in form:
            sn = form["id"]
            answer = self.registry.activate(self.murano, sn, murano=True)
        else:
            sn = "" if form is None else form.get("sn", form.get("id", ""))
            self.registry.record(sn, 400)
            log.info("activate sn=%r: 400", sn)
            return Response.text(400, f"expected a {FORM} body: vendor, model and sn, or id")
        shown = answer.fault or ("dropped" if answer.status == DROP else answer.status)
        log.info("activate sn=%r: %s", sn, shown)
        return _activation_response(answer)

    def _serial_status(self, request: Request) -> Response:
        return self._manage(Call.STATUS, request, well_formed=True)

    def _reenable(self, request: Request) -> Response:
        enable = _form(request) == {"enable": "true"}
        return self._manage(Call.REENABLE, request, well_formed=enable)

    def _manage(self, call: Call, request: Request, *, well_formed: bool) -> Response:
        """Answer a management request; the token is compared by the registry, never logged."""
        raw_model, raw_sn = request.params["model"], request.params["sn"]
        try:
            model, sn = unquote(raw_model, errors="strict"), unquote(raw_sn, errors="strict")
        except UnicodeDecodeError:
            model, sn, well_formed = raw_model, raw_sn, False
        token = request.headers.get(TOKEN_HEADER)
        answer = self.registry.manage(call, model, sn, token, well_formed=well_formed)
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("%s model=%r sn=%r: %s", call, model, sn, shown)
        return _manage_response(answer)

    def _list_devices(self, _request: Request) -> Response:
        pairs = [{"vendor": vendor, "model": model} for vendor, model in self.registry.pairs()]
        devices = [_device_json(device) for device in self.registry.devices()]
        return Response.json(200, {"pairs": pairs, "devices": devices})

    def _add_device(self, request: Request) -> Response:
        if request.headers.get_content_type() != JSON:
            return Response.text(400, f"expected a {JSON} body")
        try:
            document = json.loads(request.body)
            vendor, model, sn, state = parse_device(document, "request body")
        except ValueError as exc:
            return Response.text(400, f"request body: not valid JSON: {exc}")
        except ConfigError as exc:
            return Response.text(400, str(exc))
        device = self.registry.add(vendor, model, sn, state)
        log.info("added %s/%s sn=%r as %s", vendor, model, sn, state)
        return Response.json(201, _device_json(device))


def _form(request: Request) -> dict[str, str] | None:
    """The form fields, each given once and non-empty; None if the body is no such form."""
    if request.headers.get_content_type() != FORM:
        return None
    try:
        fields = parse_qs(request.body.decode(), errors="strict", max_num_fields=16)
    except ValueError:
        return None
    if any(len(values) != 1 for values in fields.values()):
        return None
    return {name: values[0] for name, values in fields.items()}


def _page(status: int, text: str) -> bytes:
    """An HTML error page, as proxies and load balancers write them."""
    title = f"{status} {text}"
    return (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n".encode()
    )


def _faulty(fault: Fault, answer: Answer) -> Response:
    cik = b"" if answer.cik is None else answer.cik.reveal().encode()
    delay = answer.delay
    responses = {
        Fault.ISSUED_THEN_500: Response(500, _page(500, "Internal Server Error"), HTML, delay),
        Fault.ISSUED_THEN_502: Response(502, _page(502, "Bad Gateway"), HTML, delay),
        Fault.ISSUED_THEN_504: Response(504, _page(504, "Gateway Timeout"), HTML, delay),
        Fault.ISSUED_THEN_DROPPED: Response(DROP, delay=delay),
        Fault.ISSUED_CUT_SHORT: Response(200, cik, TEXT, delay, cut=10),
        Fault.ISSUED_DRIBBLED: Response(200, cik, TEXT, delay, dribble=True),
        Fault.ISSUED_AS_201: Response(201, cik, TEXT, delay),
        Fault.ISSUED_AS_202: Response(202, cik, TEXT, delay),
        Fault.ISSUED_WITH_NEWLINE: Response(200, cik + b"\n", TEXT, delay),
        Fault.ISSUED_EMPTY: Response(200, b"", TEXT, delay),
        Fault.PROXY_PAGE: Response(200, _page(200, "Sign in to continue"), HTML, delay),
    }
    return responses[fault]


def _activation_response(answer: Answer) -> Response:
    if answer.fault is not None:
        return _faulty(answer.fault, answer)
    if answer.cik is not None:
        return Response(200, answer.cik.reveal().encode(), TEXT, answer.delay)
    return replace(Response.text(answer.status), delay=answer.delay)


def _manage_response(answer: ManageAnswer) -> Response:
    device = answer.device
    if answer.status == 200 and device is not None:
        body = f"{ONEP_STATUS[device.state]},{device.rid},"
        return Response(200, body.encode(), TEXT, answer.delay)
    if answer.status == 205:
        return Response(205, b"", TEXT, answer.delay)
    return replace(Response.text(answer.status), delay=answer.delay)


def _device_json(device: Device) -> dict[str, object]:
    return {
        "vendor": device.vendor,
        "model": device.model,
        "sn": device.sn,
        "state": str(device.state),
        "calls": device.calls,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Callable[[str, str, Message, bytes], Response],
    ) -> None:
        self.dispatch = dispatch
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def opened(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)

    def closed(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def hang_up(self) -> None:
        """Wake every handler waiting for a client's next request on a kept-alive connection."""
        with self._open_lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, _request: object, client_address: object) -> None:
        log.exception(  # noqa: LOG004 (socketserver calls this from its except clause)
            "unexpected error answering %s", client_address
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # connections are kept alive, as Exosite's are
    disable_nagle_algorithm = True
    timeout = HANDLER_TIMEOUT
    error_content_type = TEXT
    error_message_format = "%(code)d %(message)s\n"

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def parse_request(self) -> bool:
        self._arrived = time.monotonic()  # the request line has just been read
        return super().parse_request()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(413 if length > MAX_BODY else 400, "bad Content-Length")
            return
        body = self.rfile.read(length)
        path = urlsplit(self.path).path
        response = self.server.dispatch(self.command, path, self.headers, body)
        delay = response.delay - (time.monotonic() - self._arrived)
        if delay > 0 and self.server.stopping.wait(delay):
            self.close_connection = True
            return
        if response.status == DROP:
            self.close_connection = True
            return
        if self.server.stopping.is_set() or response.cut is not None or response.dribble:
            self.close_connection = True
        try:
            if response.dribble:
                self._dribble(f"HTTP/1.1 {response.status} OK\r\nX-Dribble: ".encode())
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body[: response.cut])
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s went away before its answer", self.address_string())

    def _dribble(self, start: bytes) -> None:
        """``start`` a byte at a time, then more of the header for ever, until the client
        goes away or the simulator stops."""
        for byte in start:
            self.wfile.write(bytes([byte]))
            if self.server.stopping.wait(DRIBBLE_PACE):
                return
        while not self.server.stopping.wait(DRIBBLE_PACE):
            self.wfile.write(b"0")
