"""Exosite's vendor management API: ask about a serial number, or re-enable it.

Two blocking calls, one HTTP request each, for ``gatewayctl`` and for a worker
thread of the daemon, on the HTTP client of activation
(:mod:`gatewayd.adapters.http`), with the same base URL, timeout and TLS settings::

    GET  /provision/manage/model/<model>/<sn>     X-Exosite-Token: <token>
         200 text/plain "<status>,<rid>,<extra>"  (status: activated, notactivated, expired)
    POST /provision/manage/model/<model>/<sn>     X-Exosite-Token: <token>, body enable=true
         any 2xx: pending again, so the next activation issues a new CIK

The vendor token travels only in that header. It is checked before it is used,
so that requests never quotes it in an error, and no message here names it.
Every failure becomes a :class:`VendorApiError`.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

from gatewayd.adapters import logs
from gatewayd.adapters.http import Client, HttpError, tls_context
from gatewayd.config.schema import ExositeConfig
from gatewayd.core.errors import ExositeError
from gatewayd.core.secret import Secret

log = logging.getLogger(__name__)

MANAGE_PATH: Final = "/provision/manage/model/{model}/{sn}"
TOKEN_HEADER: Final = "X-Exosite-Token"  # noqa: S105 (a header name, not a secret)
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded; charset=utf-8"
MAX_BODY: Final = 4096
_RID: Final = re.compile(r"[0-9a-fA-F]{40}")


class SerialState(enum.StrEnum):
    ACTIVATED = "activated"
    NOT_ACTIVATED = "notactivated"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class SerialStatus:
    sn: str
    model: str
    state: SerialState
    rid: str


class VendorApiError(ExositeError):
    """A vendor API call failed; ``http_status`` is Exosite's answer, None if none came;
    ``maybe_done``: Exosite may have carried the request out all the same (a timeout or a
    connection lost after it was sent, a 5xx).

    The message names the serial and the cause, never the vendor token.
    """

    def __init__(
        self, message: str, http_status: int | None = None, *, maybe_done: bool = False
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.maybe_done = maybe_done


class VendorClient:
    """Calls the vendor management API with the vendor ``token``; safe to share between threads."""

    def __init__(self, config: ExositeConfig, token: Secret) -> None:
        value = token.reveal()
        if not (value and value.isascii() and value.isprintable() and value == value.strip()):
            raise VendorApiError(
                "the vendor token is empty or holds characters an HTTP header cannot carry "
                "(not shown)"
            )
        self._token = token
        self._base = config.url.rstrip("/")
        self._timeout = config.timeout
        self._ca_file = config.ca_file
        self._tls = tls_context(config.ca_file)
        if urlsplit(config.url).scheme.lower() == "http":
            log.warning(
                "exosite.url %s is plain HTTP: the vendor token crosses the network "
                "unencrypted (meant for a local simulator only)",
                config.url,
            )

    def status(self, model: str, sn: str) -> SerialStatus:
        """What Exosite says about ``sn`` of ``model``; raises :class:`VendorApiError`."""
        status, body = self._send("GET", model, sn, "status request")
        if status != 200:
            raise _refused(status, model, sn, "status request")
        parsed = _parse_status(body)
        if parsed is None:
            raise VendorApiError(
                f"Exosite's answer to the status request for serial {sn!r} is not "
                f"'<status>,<rid>,<extra>' ({len(body)} bytes, not shown)",
                status,
            )
        state, rid = parsed
        log.debug("vendor API: serial %s of model %s is %s", sn, model, state, extra=logs.about(sn))
        return SerialStatus(sn, model, state, rid)

    def reenable(self, model: str, sn: str) -> None:
        """Make ``sn`` activatable again (a new CIK is issued on activation); any 2xx is success."""
        status, _ = self._send("POST", model, sn, "re-enable request", {"enable": "true"})
        if not 200 <= status < 300:
            raise _refused(status, model, sn, "re-enable request")
        log.info(
            "vendor API: serial %s of model %s re-enabled (HTTP %d)",
            sn,
            model,
            status,
            extra=logs.about(sn),
        )

    def reenable_in_background(
        self, model: str, sn: str, done: Callable[[VendorApiError | None], None]
    ) -> None:
        """:meth:`reenable` on a thread of its own (it is rare); ``done`` gets None once it
        succeeded, or the error (an unexpected one may have been carried out)."""

        def work() -> None:
            try:
                self.reenable(model, sn)
            except VendorApiError as exc:
                done(exc)
            except Exception as exc:
                log.exception("node %s: re-enabling failed unexpectedly", sn, extra=logs.about(sn))
                done(VendorApiError(f"internal error: {type(exc).__name__}", maybe_done=True))
            else:
                done(None)

        threading.Thread(target=work, name=f"reenable-{sn}", daemon=True).start()

    def _send(
        self, method: str, model: str, sn: str, what: str, form: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """The status and (at most ``MAX_BODY`` + 1 bytes of) the body of one request."""
        url = self._base + MANAGE_PATH.format(model=_segment(model, what), sn=_segment(sn, what))
        headers = {TOKEN_HEADER: self._token.reveal(), "Accept": "text/plain"}
        if form is not None:
            headers["Content-Type"] = FORM_CONTENT_TYPE
        log.debug("vendor API: %s for serial %s of model %s", what, sn, model, extra=logs.about(sn))
        client = Client(self._ca_file, context=self._tls, max_body=MAX_BODY + 1)
        try:
            answer = client.request(method, url, form=form, headers=headers, timeout=self._timeout)
        except HttpError as exc:
            raise VendorApiError(
                f"the {what} for serial {sn!r} failed: {exc}", maybe_done=exc.reached
            ) from exc
        finally:
            client.close()
        if answer.broken is not None and len(answer.body) <= MAX_BODY:
            raise VendorApiError(
                f"the {what} for serial {sn!r} failed: {answer.broken}", maybe_done=True
            )
        return answer.status, answer.body


def _segment(text: str, what: str) -> str:
    """``text`` as one URL path segment; '.' and '..' would be resolved away, so are refused."""
    if text in {"", ".", ".."}:
        raise VendorApiError(f"the {what} cannot name {text!r} in a URL path")
    return quote(text, safe="")


def _parse_status(body: bytes) -> tuple[SerialState, str] | None:
    """The state and rid of a ``<status>,<rid>,<extra>`` body; None if it is not one."""
    if len(body) > MAX_BODY:
        return None
    try:
        text = body.decode("ascii").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        return None
    state, _, rest = text.partition(",")
    rid, comma, extra = rest.partition(",")
    if not comma or state not in set(SerialState) or not _RID.fullmatch(rid):
        return None
    if not extra.isprintable():  # one line: what follows the rid is free text
        return None
    return SerialState(state), rid


def _refused(status: int, model: str, sn: str, what: str) -> VendorApiError:
    if status == 401:
        return VendorApiError("the vendor token was refused (HTTP 401)", 401)
    if status == 404:
        return VendorApiError(f"unknown model {model!r} or serial {sn!r} (HTTP 404)", 404)
    return VendorApiError(
        f"the {what} for serial {sn!r} was answered HTTP {status}",
        status,
        maybe_done=status >= 500,  # a 5xx may come after the change was made
    )
