"""The One Platform JSON RPC as far as the simulator serves it: the ``lookup`` of a
client's own resource id, which tells whose a CIK is.

A request is a JSON object ``{"auth": {"cik": CIK}, "calls": [CALL, ...]}``; a call
is ``{"id": ID, "procedure": NAME, "arguments": [...]}``. The answer is a list with
one entry per call that has an ``id`` (a number, or a string of up to 40
characters), in the calls' order. This module parses a request and answers its
calls for a client whose rid is known; it does no I/O and knows nothing of CIKs
beyond reading one from ``auth``.

The entries follow Exosite's documented shapes:

- ``{"id": ID, "status": "ok", "result": RID}``: ``lookup`` with the arguments
  ``["alias", ""]`` or ``[CLIENT, "alias", ""]``, where ``CLIENT`` is
  ``{"alias": ""}`` or the caller's own rid;
- ``{"id": ID, "status": "invalid"}``: an alias the caller does not have (a
  simulated device has no child resources);
- ``{"id": ID, "status": "restricted"}``: a ``CLIENT`` rid other than the caller's;
- ``{"id": ID, "status": "fail", "error": {"code": 501, "message": ..., "context":
  "procedure" | "arguments"}}``: another procedure, or ``lookup`` by ``owner`` or
  ``shared``, or arguments of another shape.

A request that is not such JSON is refused as a whole with
``{"error": {"code": -1 | 400, "message": ..., "context": ...}}`` (code -1: not
JSON at all), and an unknown CIK with :func:`refusal`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Final

MAX_ID_CHARS: Final = 40
RID: Final = re.compile(r"[0-9a-f]{40}")
SELF: Final = {"alias": ""}
"""A reference to the calling client itself."""

CallId = int | float | str
Entry = dict[str, object]


class RpcError(ValueError):
    """A request refused as a whole: the HTTP answer is 400 with :meth:`document`."""

    def __init__(self, code: int, message: str, context: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.context = context

    def document(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.context is not None:
            error["context"] = self.context
        return {"error": error}


@dataclass(frozen=True, slots=True)
class RpcCall:
    id: CallId | None
    """None: the caller wants no answer to this call."""
    procedure: str
    arguments: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class RpcRequest:
    cik: str
    calls: tuple[RpcCall, ...]

    def __repr__(self) -> str:  # the CIK is a secret: never in a repr
        return f"RpcRequest(cik=<hidden>, calls={self.calls!r})"


def refusal() -> dict[str, object]:
    """The body Exosite answers (with HTTP 401) when ``auth`` names no client it knows."""
    return RpcError(401, "Invalid", "auth").document()


def parse(body: bytes) -> RpcRequest:
    """The request in ``body``; raises :class:`RpcError` if it is no such request."""
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RpcError(-1, "the request is not valid JSON") from None
    if not isinstance(document, dict):
        raise RpcError(400, "the request is not a JSON object")
    auth = document.get("auth")
    if not isinstance(auth, dict) or auth.keys() != {"cik"} or not isinstance(auth["cik"], str):
        raise RpcError(400, 'expected "auth": {"cik": CIK}', "auth")
    calls = document.get("calls")
    if not isinstance(calls, list):
        raise RpcError(400, 'expected "calls" to be a list', "calls")
    return RpcRequest(auth["cik"], tuple(_call(call) for call in calls))


def answer(calls: tuple[RpcCall, ...], rid: str) -> list[Entry]:
    """The entries for the calls that have an id, made by the client whose rid is ``rid``."""
    return [_answer(call, rid) for call in calls if call.id is not None]


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _call(call: object) -> RpcCall:
    if not isinstance(call, dict):
        raise RpcError(400, "a call is not a JSON object", "calls")
    call_id = call.get("id")
    if not _is_id(call_id):
        raise RpcError(400, f"a call's id is no number or string of up to {MAX_ID_CHARS}", "calls")
    procedure = call.get("procedure")
    if not isinstance(procedure, str):
        raise RpcError(400, "a call has no procedure", "procedure")
    arguments = call.get("arguments")
    if not isinstance(arguments, list):
        raise RpcError(400, "a call's arguments are not a list", "arguments")
    return RpcCall(call_id, procedure, tuple(arguments))


def _is_id(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS


def _answer(call: RpcCall, rid: str) -> Entry:
    if call.procedure != "lookup":
        return _fail(call, "procedure", f"the simulator does not serve {call.procedure!r}")
    arguments = call.arguments
    if len(arguments) == 3:  # the form that names the client first
        client, *rest = arguments
        arguments = tuple(rest)
        if isinstance(client, str) and RID.fullmatch(client):
            if client != rid:
                return {"id": call.id, "status": "restricted"}
        elif isinstance(client, dict) and client.keys() == {"alias"}:
            if not isinstance(client["alias"], str):
                return _fail(call, "arguments", "an alias is a string")
            if client["alias"]:
                return {"id": call.id, "status": "invalid"}
        else:
            return _fail(call, "arguments", "expected a client: a rid or {'alias': ''}")
    if len(arguments) != 2 or arguments[0] != "alias" or not isinstance(arguments[1], str):
        return _fail(call, "arguments", "the simulator looks up only an alias")
    if arguments[1]:
        return {"id": call.id, "status": "invalid"}
    return {"id": call.id, "status": "ok", "result": rid}


def _fail(call: RpcCall, context: str, message: str) -> Entry:
    return {
        "id": call.id,
        "status": "fail",
        "error": {"code": 501, "message": message, "context": context},
    }
