"""Asking Exosite about a CIK, without side effects: whether it accepts it, and whose it is.

Two questions, each answered only by Exosite itself; any answer a proxy or a
broken link could have given decides nothing (:attr:`Verdict.UNKNOWN`):

- **Is it valid?** The One Platform RPC ``lookup`` of the CIK's own resource
  (``POST /onep:v1/rpc/process``, ``{"auth": {"cik": CIK}, "calls": [{"id": 1,
  "procedure": "lookup", "arguments": ["alias", ""]}]}``) answers its resource
  id (rid). HTTP 401, or the RPC's own refusal of the CIK (``{"error": {"code":
  401, ...}}``), means Exosite refuses it. With a vendor token that refusal
  counts only once the vendor API, asked about the serial, confirms it
  (``GET /provision/manage/model/<model>/<sn>``): the serial was re-enabled or
  has expired (its CIK is void), or it is activated and the refusal was the
  RPC's own JSON, which no proxy writes (its CIK was regenerated).
- **Is it this serial's?** (``owner``, before a CIK a node offers is adopted) The
  CIK's rid, as above, equals the serial's rid from the vendor API. Without a
  vendor token nothing can prove it: no verdict.

A 403, 407, 5xx, an HTML page, a timeout or any other answer is no verdict.
The CIK travels only in the RPC's JSON body, over the HTTP client of activation;
it is never logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import Verdict
from gatewayd.core.secret import Secret

if TYPE_CHECKING:
    from gatewayd.adapters.http import Client
    from gatewayd.adapters.vendor import VendorClient

RPC_PATH: Final = "/onep:v1/rpc/process"
RPC_HEADERS: Final = {"Content-Type": "application/json; charset=utf-8", "Accept": "*/*"}
_RID: Final = re.compile(r"[0-9a-f]{40}")
MAX_ANSWER: Final = 4096
"""A lookup's answer is a few dozen bytes: a longer one is no RPC answer."""


def rpc_url(config: ExositeConfig) -> str:
    return config.url.rstrip("/") + RPC_PATH


def lookup_body(cik: Secret) -> bytes:
    """The RPC request that resolves ``cik``'s own rid."""
    call = {"id": 1, "procedure": "lookup", "arguments": ["alias", ""]}
    return json.dumps({"auth": {"cik": cik.reveal()}, "calls": [call]}).encode()


def own_refusal(status: int, body: bytes) -> bool:
    """Whether a refusal is the RPC's own JSON (``{"error": {"code": 401, ...}}``), not a
    bare status a proxy could have sent."""
    if status not in {200, 401} or len(body) > MAX_ANSWER:
        return False
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    error = answer.get("error") if isinstance(answer, dict) else None
    return isinstance(error, dict) and error.get("code") == 401


def read_lookup(status: int, body: bytes) -> str | Verdict:
    """The rid a lookup answered, or :attr:`Verdict.REFUSED` (Exosite refuses the CIK),
    or :attr:`Verdict.UNKNOWN` (anything else)."""
    if status == 401:
        return Verdict.REFUSED
    if status != 200 or len(body) > MAX_ANSWER:
        return Verdict.UNKNOWN
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Verdict.UNKNOWN
    if isinstance(answer, dict):  # a general error: the RPC refused the request
        error = answer.get("error")
        refused = isinstance(error, dict) and error.get("code") == 401
        return Verdict.REFUSED if refused else Verdict.UNKNOWN
    if not isinstance(answer, list) or len(answer) != 1 or not isinstance(answer[0], dict):
        return Verdict.UNKNOWN
    call = answer[0]
    result = call.get("result")
    if call.get("id") != 1 or call.get("status") != "ok" or not isinstance(result, str):
        return Verdict.UNKNOWN
    rid = result.lower()
    return rid if _RID.fullmatch(rid) else Verdict.UNKNOWN


def lookup(client: Client, config: ExositeConfig, cik: Secret) -> tuple[str | Verdict, str, bool]:
    """The RPC lookup of ``cik``'s rid (:func:`read_lookup`), its answer in words, and
    whether a refusal was the RPC's own (:func:`own_refusal`)."""
    from gatewayd.adapters.http import HttpError  # noqa: PLC0415 (loaded with the client)

    try:
        answer = client.request(
            "POST",
            rpc_url(config),
            body=lookup_body(cik),
            headers=RPC_HEADERS,
            timeout=config.timeout,
        )
    except HttpError as exc:
        return Verdict.UNKNOWN, str(exc), False
    said = f"HTTP {answer.status}"
    if answer.broken is not None:
        return Verdict.UNKNOWN, f"{said}, {answer.broken}", False
    found = read_lookup(answer.status, answer.body)
    if found is Verdict.UNKNOWN and answer.status == 200:
        said += ", not an RPC lookup answer"
    return found, said, own_refusal(answer.status, answer.body)


def check(
    client: Client,
    config: ExositeConfig,
    cik: Secret,
    *,
    sn: str,
    model: str,
    vendor: VendorClient | None,
    owner: bool = False,
    pace: Callable[[], bool] = lambda: True,
) -> tuple[Verdict, str]:
    """Exosite's verdict on ``cik`` as ``sn``'s CIK (``owner``: that it is ``sn``'s own),
    and what it came to in words ("HTTP 401", a timeout). ``pace`` is called before the
    second request (the vendor API's), as the rate limit asks; False: it is not sent."""
    found, said, own = lookup(client, config, cik)
    if found is Verdict.UNKNOWN:
        return Verdict.UNKNOWN, said
    if vendor is None:
        if owner:
            return Verdict.UNKNOWN, "no vendor token: whose CIK it is cannot be proved"
        return (Verdict.REFUSED, said) if found is Verdict.REFUSED else (Verdict.ACCEPTED, said)
    if found is Verdict.REFUSED and owner:
        return Verdict.REFUSED, said  # not adopted: nothing to confirm
    if found is not Verdict.REFUSED and not owner:
        return Verdict.ACCEPTED, said
    if not pace():
        return Verdict.UNKNOWN, f"{said}; the vendor API not asked: gatewayd is stopping"
    return _with_vendor(vendor, model, sn, found, said, own=own)


def _with_vendor(
    vendor: VendorClient, model: str, sn: str, found: str | Verdict, said: str, *, own: bool
) -> tuple[Verdict, str]:
    """The verdict once the vendor API says what it knows of the serial: it confirms a
    refusal, and proves (or disproves) that a CIK with rid ``found`` is the serial's."""
    from gatewayd.adapters.vendor import (  # noqa: PLC0415 (with the client)
        SerialState,
        VendorApiError,
    )

    try:
        serial = vendor.status(model, sn)
    except VendorApiError as exc:
        if exc.http_status == 404 and found is not Verdict.REFUSED:
            return Verdict.REFUSED, f"{said}; the vendor API does not know the serial (HTTP 404)"
        return Verdict.UNKNOWN, f"{said}; the vendor API did not answer: {exc}"
    if found is Verdict.REFUSED:
        void = serial.state is not SerialState.ACTIVATED  # re-enabled, or expired
        if void or own:
            return Verdict.REFUSED, f"{said}; the vendor API has the serial {serial.state}"
        return Verdict.UNKNOWN, (
            f"{said}, not in the RPC's own words, and the vendor API has the serial activated"
        )
    if found == serial.rid.lower():
        return Verdict.ACCEPTED, f"{said}; the CIK's rid is the serial's"
    return Verdict.REFUSED, f"{said}; the CIK is another device's (its rid is not the serial's)"
