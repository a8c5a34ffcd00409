"""Asking Exosite whether it accepts a CIK, without side effects.

``GET /onep:v1/stack/alias`` (no alias named) on the activation host, One
Platform and Murano alike, with the header ``X-Exosite-CIK``: a 2xx means
Exosite accepts the CIK, 401 or 403 that it does not; any other answer, or none
within the timeout, decides nothing. The CIK goes in that one header, over the
same HTTP client as activation; it is never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from gatewayd.config.schema import ExositeConfig
from gatewayd.core.events import Verdict
from gatewayd.core.secret import Secret

if TYPE_CHECKING:
    from gatewayd.adapters.http import Client

CHECK_PATH: Final = "/onep:v1/stack/alias"
CIK_HEADER: Final = "X-Exosite-CIK"


def check_url(config: ExositeConfig) -> str:
    return config.url.rstrip("/") + CHECK_PATH


def verdict(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.ACCEPTED
    if status in {401, 403}:
        return Verdict.REFUSED
    return Verdict.UNKNOWN


def check(client: Client, config: ExositeConfig, cik: Secret) -> tuple[Verdict, str]:
    """Exosite's verdict on ``cik``, and what it came to in words ("HTTP 401", a timeout)."""
    from gatewayd.adapters.http import HttpError  # noqa: PLC0415 (loaded with the client)

    headers = {CIK_HEADER: cik.reveal(), "Accept": "*/*"}
    try:
        answer = client.request("GET", check_url(config), headers=headers, timeout=config.timeout)
    except HttpError as exc:
        return Verdict.UNKNOWN, str(exc)
    if answer.broken is not None and not 200 <= answer.status < 300:
        return Verdict.UNKNOWN, answer.broken
    return verdict(answer.status), f"HTTP {answer.status}"
