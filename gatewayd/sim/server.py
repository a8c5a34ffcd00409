"""The simulator's API: a routing table and its endpoints.

An endpoint is a function from a :class:`~gatewayd.sim.wire.Request` to a
:class:`~gatewayd.sim.wire.Response`; it does no I/O. The server of
:mod:`gatewayd.sim.wire` reads each request, looks the endpoint up in
:attr:`Simulator.routes` and writes the response.

The vendor management API, with header ``X-Exosite-Token: <vendor token>``
(missing or wrong: 401; unknown model or serial: 404)::

    GET  /provision/manage/model/<model>/<sn>
        200 text/plain  <status>,<rid>,<extra>   status: activated, notactivated
                                                 or expired; rid: 40 hex; extra: empty
    POST /provision/manage/model/<model>/<sn>   form body enable=true (else 400)
        205 empty body: the device is pending again, for a fresh 24 h

``<model>`` and ``<sn>`` are percent-decoded path segments.

A device's own API, the HTTP Data API, with header ``X-Exosite-CIK: <cik>`` (a CIK
that is not its device's current one: 401, before anything else; bodies and
answers ``application/x-www-form-urlencoded``, see :mod:`gatewayd.sim.dataports`)::

    GET  /onep:v1/stack/alias                   no alias named: the check of a CIK
        200 empty body: the CIK is its device's current one
    GET  /onep:v1/stack/alias?<alias>&<alias>   a read
        200 <alias>=<value>&...  the latest value of each alias that has one
        204 empty body: none has
    POST /onep:v1/stack/alias{?<alias>&...}     body <alias>=<value>&...: a write
        204 empty body; with aliases named, the read that follows it (200 or 204)
    POST /onep:v1/stack/record                  body alias=<alias>&<ts>=<value>&...
        204 empty body; 409 <alias>=<ts>&... for values of an alias within a second
    400 a malformed form or query; 413 a value over 4 KiB, or a write that would
    take the device past 32 aliases

The One Platform RPC, enough to tell whose a CIK is (see :mod:`gatewayd.sim.rpc`)::

    POST /onep:v1/rpc/process   application/json body
         {"auth": {"cik": CIK}, "calls": [{"id": 1, "procedure": "lookup",
                                            "arguments": ["alias", ""]}]}
        200 application/json  [{"id": 1, "status": "ok", "result": "<rid>"}]
            the device's rid, as the management GET answers it; a call without
            an id is not answered (none with one: 204, empty body)
        401 {"error": {"code": 401, "message": "Invalid", "context": "auth"}}
            the CIK is not its device's current one
        400 {"error": {"code": -1 | 400, ...}}  the body is no such request
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from dataclasses import replace
from email.message import Message
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import parse_qs, unquote

from gatewayd.core.errors import ConfigError
from gatewayd.sim import rpc
from gatewayd.sim.dataports import (
    MAX_ALIASES,
    DataError,
    DataRequest,
    parse_read,
    parse_record,
    parse_write,
)
from gatewayd.sim.devices import State, parse_device
from gatewayd.sim.model import DROP, Answer, Call, DataAnswer, Device, Fault, ManageAnswer
from gatewayd.sim.registry import Registry
from gatewayd.sim.wire import JSON, POLL_INTERVAL, TEXT, Request, Response, Route, Server

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

log = logging.getLogger(__name__)

HTML: Final = "text/html; charset=utf-8"
FORM: Final = "application/x-www-form-urlencoded"
FORM_UTF8: Final = "application/x-www-form-urlencoded; charset=utf-8"
TOKEN_HEADER: Final = "X-Exosite-Token"  # noqa: S105 (a header name, not a secret)
CIK_HEADER: Final = "X-Exosite-CIK"
ALIAS_PATH: Final = "/onep:v1/stack/alias"
RECORD_PATH: Final = "/onep:v1/stack/record"
RPC_PATH: Final = "/onep:v1/rpc/process"
JSON_UTF8: Final = "application/json; charset=utf-8"
MANAGE_PATH: Final = re.compile(r"/provision/manage/model/(?P<model>[^/]+)/(?P<sn>[^/]+)")
ONEP_STATUS: Final = MappingProxyType(
    {State.ACTIVATED: "activated", State.PENDING: "notactivated", State.EXPIRED: "expired"}
)
"""The One Platform's word for each device state, in a status answer."""


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
            Route("GET", re.compile(re.escape(ALIAS_PATH)), self._read),
            Route("POST", re.compile(re.escape(ALIAS_PATH)), self._write),
            Route("POST", re.compile(re.escape(RECORD_PATH)), self._record),
            Route("POST", re.compile(re.escape(RPC_PATH)), self._rpc),
            Route("GET", re.compile(r"/_sim/devices"), self._list_devices),
            Route("POST", re.compile(r"/_sim/devices"), self._add_device),
            Route("POST", re.compile(r"/_sim/regenerate"), self._regenerate),
        )
        self._server = Server((host, port), self.dispatch)
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

    def dispatch(
        self, method: str, path: str, headers: Message, body: bytes, query: str = ""
    ) -> Response:
        """The response the routing table gives; 404 for an unknown path, 405 for a method."""
        path_known = False
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != method:
                path_known = True
                continue
            return route.endpoint(Request(method, path, headers, body, match.groupdict(), query))
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

    def _read(self, request: Request) -> Response:
        """A read of the aliases the query names; with none named, the check of a CIK."""
        parsed: DataRequest | DataError
        try:
            parsed = parse_read(request.query)
        except DataError as exc:
            parsed = exc
        if isinstance(parsed, DataRequest) and not parsed.reads:
            return self._check(request)
        return self._data(Call.READ, request, parsed)

    def _write(self, request: Request) -> Response:
        """A write of the form's values, then a read of the aliases the query names."""
        parse = functools.partial(parse_write, query=request.query)
        return self._data(Call.WRITE, request, _data_form(request, parse))

    def _record(self, request: Request) -> Response:
        return self._data(Call.RECORD, request, _data_form(request, parse_record))

    def _data(self, call: Call, request: Request, parsed: DataRequest | DataError) -> Response:
        """Answer a Data API request; its CIK is compared by the registry, never logged."""
        answer = self.registry.data(call, request.headers.get(CIK_HEADER), parsed)
        device = answer.device
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("%s sn=%r: %s", call, "" if device is None else device.sn, shown)
        return _data_response(answer, parsed)

    def _check(self, request: Request) -> Response:
        """Check a CIK; it is compared by the registry, never logged."""
        answer = self.registry.check(request.headers.get(CIK_HEADER))
        device = answer.device
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("check sn=%r: %s", "" if device is None else device.sn, shown)
        if answer.status == 200:
            return Response(200, b"", TEXT, answer.delay)
        return replace(Response.text(answer.status), delay=answer.delay)

    def _rpc(self, request: Request) -> Response:
        """Answer a One Platform RPC request (see :mod:`gatewayd.sim.rpc`); its CIK is
        compared by the registry, never logged."""
        parsed: rpc.RpcRequest | rpc.RpcError
        if request.headers.get_content_type() != JSON:
            parsed = rpc.RpcError(400, f"expected a {JSON} body")
        else:
            try:
                parsed = rpc.parse(request.body)
            except rpc.RpcError as exc:
                parsed = exc
        cik = parsed.cik if isinstance(parsed, rpc.RpcRequest) else None
        answer = self.registry.lookup(cik, well_formed=cik is not None)
        device = answer.device
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("lookup sn=%r: %s", "" if device is None else device.sn, shown)
        if isinstance(parsed, rpc.RpcRequest) and device is not None:
            entries = rpc.answer(parsed.calls, device.rid)
            if not entries:  # no call asked for an answer
                return Response(204, b"", TEXT, answer.delay)
            return _json(200, entries, answer.delay)
        if isinstance(parsed, rpc.RpcError) and answer.status == 400:
            return _json(400, parsed.document(), answer.delay)
        if answer.status == 401:
            return _json(401, rpc.refusal(), answer.delay)
        return replace(Response.text(answer.status), delay=answer.delay)

    def _list_devices(self, _request: Request) -> Response:
        pairs = [{"vendor": vendor, "model": model} for vendor, model in self.registry.pairs()]
        devices = [_device_json(device) for device in self.registry.devices()]
        return Response.json(200, {"pairs": pairs, "devices": devices})

    def _regenerate(self, request: Request) -> Response:
        """Regenerate a device's CIK, as in Portals: the one its node holds stops working."""
        if request.headers.get_content_type() != JSON:
            return Response.text(400, f"expected a {JSON} body")
        try:
            document = json.loads(request.body)
            key = (document["vendor"], document["model"], document["sn"])
            self.registry.regenerate(*key)
        except (ValueError, KeyError, TypeError):
            return Response.text(404, "expected vendor, model and sn of a known device")
        log.info("regenerated the CIK of %s/%s sn=%r", *key)
        return Response.json(200, {"vendor": key[0], "model": key[1], "sn": key[2]})

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


def _data_form(request: Request, parse: Callable[[bytes], DataRequest]) -> DataRequest | DataError:
    """The request a form body makes, or why it makes none."""
    if request.headers.get_content_type() != FORM:
        return DataError(400, f"expected a {FORM} body")
    try:
        return parse(request.body)
    except DataError as exc:
        return exc


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


def _data_response(answer: DataAnswer, parsed: DataRequest | DataError) -> Response:
    result, delay = answer.result, answer.delay
    if result is not None and result.pairs:
        return Response(result.status, result.body(), FORM_UTF8, delay)
    if result is not None and result.status == 413:
        text = f"a device keeps values for at most {MAX_ALIASES} aliases"
        return replace(Response.text(413, text), delay=delay)
    if result is not None:
        return Response(result.status, b"", TEXT, delay)
    if isinstance(parsed, DataError) and answer.status == parsed.status:
        return replace(Response.text(parsed.status, str(parsed)), delay=delay)
    return replace(Response.text(answer.status), delay=delay)


def _json(status: int, document: object, delay: float) -> Response:
    return Response(status, json.dumps(document).encode(), JSON_UTF8, delay)


def _device_json(device: Device) -> dict[str, object]:
    return {
        "vendor": device.vendor,
        "model": device.model,
        "sn": device.sn,
        "state": str(device.state),
        "calls": device.calls,
    }
