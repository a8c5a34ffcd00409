"""The simulator's API: a routing table and its endpoints.

An endpoint is a function from a :class:`~gatewayd.sim.wire.Request` to a
:class:`~gatewayd.sim.wire.Response`; it does no I/O. The server of
:mod:`gatewayd.sim.wire` reads each request, looks the endpoint up in
:attr:`Simulator.routes` and writes the response. The registry's faults
(latency, errors, drops) apply to every endpoint but ``/_sim/``.

Activation (form bodies; 400 for another body)::

    POST /provision/activate    vendor=<vendor>&model=<model>&sn=<sn>
        200 text/plain <cik>, the first time; 409 after that, or once the 24 h
        window has passed; 404 unknown serial; 403 unknown vendor/model pair
    POST /provision/activate    id=<sn>   (Murano's form, for the ``murano`` pair)
        200 text/plain <cik>; 409 once provisioned; 404 not listed, or no
        Murano product

The vendor management API, with header ``X-Exosite-Token: <vendor token>``
(missing or wrong: 401; unknown model or serial: 404)::

    GET  /provision/manage/model/<model>/<sn>
        200 text/plain  <status>,<rid>,<extra>   status: activated, notactivated
                                                 or expired; rid: 40 hex; extra: empty
    POST /provision/manage/model/<model>/<sn>   form body enable=true (else 400)
        205 empty body: the device is pending again, for a fresh 24 h

``<model>`` and ``<sn>`` are percent-decoded path segments.

A device's own API, the calls it makes with its CIK (see :mod:`gatewayd.sim.deviceapi`
for every answer)::

    GET  /onep:v1/stack/alias                   the check of a CIK (no alias named)
    GET  /onep:v1/stack/alias?<alias>&...       the Data API's read
    POST /onep:v1/stack/alias                   the Data API's write (and read)
    POST /onep:v1/stack/record                  the Data API's record
    POST /onep:v1/rpc/process                   the One Platform RPC: lookup

The simulator's own controls (JSON bodies and answers)::

    GET  /_sim/devices      200 {"pairs": [...], "devices": [...]}: states and call
                            counts, never a CIK
    POST /_sim/devices      {"vendor", "model", "sn", "state"?}: 201, the device
                            added, or added again (its state anew, its values gone)
    POST /_sim/regenerate   {"vendor", "model", "sn"}: 200, a new CIK no node holds
"""

from __future__ import annotations

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
from gatewayd.sim.answers import activation_response
from gatewayd.sim.deviceapi import ALIAS_PATH, RECORD_PATH, RPC_PATH, DeviceApi
from gatewayd.sim.devices import State, parse_device
from gatewayd.sim.model import DROP, Call, Device, ManageAnswer
from gatewayd.sim.registry import Registry
from gatewayd.sim.wire import FORM, JSON, POLL_INTERVAL, TEXT, Request, Response, Route, Server

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

TOKEN_HEADER: Final = "X-Exosite-Token"  # noqa: S105 (a header name, not a secret)
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
        device = DeviceApi(registry)
        self.routes: tuple[Route, ...] = (
            Route("POST", re.compile(r"/provision/activate"), self._activate),
            Route("GET", MANAGE_PATH, self._serial_status),
            Route("POST", MANAGE_PATH, self._reenable),
            Route("GET", re.compile(re.escape(ALIAS_PATH)), device.read),
            Route("POST", re.compile(re.escape(ALIAS_PATH)), device.write),
            Route("POST", re.compile(re.escape(RECORD_PATH)), device.record),
            Route("POST", re.compile(re.escape(RPC_PATH)), device.rpc),
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
        return activation_response(answer)

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

    def _regenerate(self, request: Request) -> Response:
        """Regenerate a device's CIK, as in Portals: the one its node holds stops working."""
        if request.headers.get_content_type() != JSON:
            return Response.text(400, f"expected a {JSON} body")
        try:
            document = json.loads(request.body)
            key = (document["vendor"], document["model"], document["sn"])
            self.registry.regenerate(*key)
        except (ValueError, KeyError, TypeError, RecursionError):
            return Response.text(404, "expected vendor, model and sn of a known device")
        log.info("regenerated the CIK of %s/%s sn=%r", *key)
        return Response.json(200, {"vendor": key[0], "model": key[1], "sn": key[2]})

    def _add_device(self, request: Request) -> Response:
        if request.headers.get_content_type() != JSON:
            return Response.text(400, f"expected a {JSON} body")
        try:
            document = json.loads(request.body)
            vendor, model, sn, state = parse_device(document, "request body")
        except (ValueError, RecursionError) as exc:
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
