"""A device's own API, the calls it makes with its CIK: the check of a CIK, the HTTP
Data API and the One Platform RPC's lookup. :class:`~gatewayd.sim.server.Simulator`
routes to these endpoints; the registry answers for the device (its CIK is
compared there, never logged) and keeps its values.

With header ``X-Exosite-CIK: <cik>`` (a CIK that is not its device's current one:
401, whatever else the request says; bodies and answers
``application/x-www-form-urlencoded``, see :mod:`gatewayd.sim.dataports`)::

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
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from gatewayd.sim import rpc
from gatewayd.sim.dataports import (
    MAX_ALIASES,
    DataError,
    DataRequest,
    parse_read,
    parse_record,
    parse_write,
)
from gatewayd.sim.model import DROP, Call, DataAnswer
from gatewayd.sim.wire import FORM, JSON, TEXT, Request, Response

if TYPE_CHECKING:
    from collections.abc import Callable

    from gatewayd.sim.registry import Registry

log = logging.getLogger(__name__)

CIK_HEADER: Final = "X-Exosite-CIK"
ALIAS_PATH: Final = "/onep:v1/stack/alias"
RECORD_PATH: Final = "/onep:v1/stack/record"
RPC_PATH: Final = "/onep:v1/rpc/process"
JSON_UTF8: Final = "application/json; charset=utf-8"
FORM_UTF8: Final = "application/x-www-form-urlencoded; charset=utf-8"


class DeviceApi:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def read(self, request: Request) -> Response:
        """A read of the aliases the query names; with none named, the check of a CIK."""
        parsed: DataRequest | DataError
        try:
            parsed = parse_read(request.query)
        except DataError as exc:
            parsed = exc
        if isinstance(parsed, DataRequest) and not parsed.reads:
            return self.check(request)
        return self._data(Call.READ, request, parsed)

    def write(self, request: Request) -> Response:
        """A write of the form's values, then a read of the aliases the query names."""
        parse = functools.partial(parse_write, query=request.query)
        return self._data(Call.WRITE, request, _data_form(request, parse))

    def record(self, request: Request) -> Response:
        return self._data(Call.RECORD, request, _data_form(request, parse_record))

    def _data(self, call: Call, request: Request, parsed: DataRequest | DataError) -> Response:
        """Answer a Data API request; its CIK is compared by the registry, never logged."""
        answer = self.registry.data(call, request.headers.get(CIK_HEADER), parsed)
        device = answer.device
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("%s sn=%r: %s", call, "" if device is None else device.sn, shown)
        return _data_response(answer, parsed)

    def check(self, request: Request) -> Response:
        """Check a CIK; it is compared by the registry, never logged."""
        answer = self.registry.check(request.headers.get(CIK_HEADER))
        device = answer.device
        shown = "dropped" if answer.status == DROP else answer.status
        log.info("check sn=%r: %s", "" if device is None else device.sn, shown)
        if answer.status == 200:
            return Response(200, b"", TEXT, answer.delay)
        return replace(Response.text(answer.status), delay=answer.delay)

    def rpc(self, request: Request) -> Response:
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


def _data_form(request: Request, parse: Callable[[bytes], DataRequest]) -> DataRequest | DataError:
    """The request a form body makes, or why it makes none."""
    if request.headers.get_content_type() != FORM:
        return DataError(400, f"expected a {FORM} body")
    try:
        return parse(request.body)
    except DataError as exc:
        return exc


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
