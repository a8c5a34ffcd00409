"""What an HTTP exchange that failed comes to, in one line for a log or an answer: never a
header value, a body or anything else the server sent."""

from __future__ import annotations

import ssl
from typing import Final

import requests
import urllib3

_CHAIN_LIMIT: Final = 8


def overdue(timeout: float) -> str:
    return f"timeout after {timeout:g} s"


def describe(exc: BaseException, timeout: float) -> str:
    """An HTTP error in a line, for a log or an answer; never a header value or a body."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError in 1.26
        return f"connection error: {cause_line(exc)}"
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "request error: a header value was refused (not shown)"
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError | ssl.SSLError):
        return f"TLS error: {cause_line(exc)}"
    if isinstance(_innermost(exc), TimeoutError) or isinstance(
        exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
    ):
        return overdue(timeout)
    if isinstance(
        exc, requests.exceptions.ConnectionError | OSError | urllib3.exceptions.HTTPError
    ):
        return f"connection error: {cause_line(exc)}"
    return f"request error: {cause_line(exc)}"


def _innermost(exc: BaseException) -> BaseException:
    for _ in range(_CHAIN_LIMIT):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def cause_line(exc: BaseException) -> str:
    """The innermost cause of an error, in one line, for a log or an answer. Only an error
    of the system (a socket, TLS, a proxy's refusal) is quoted: one of parsing an answer
    (a status line, a chunk size) may quote what the server sent, a CIK among it, so
    only its kind is named."""
    inner = _innermost(exc)
    if not isinstance(inner, OSError):
        return f"the answer could not be read ({type(inner).__name__})"
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:200]
