"""How an activation's answer goes on the wire: the CIK, a refusal, or a scripted
:class:`~gatewayd.sim.model.Fault`, written as a proxy, a load balancer or a
broken link would make of Exosite's answer."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from gatewayd.sim.model import DROP, Answer, Fault
from gatewayd.sim.wire import TEXT, Response

HTML: Final = "text/html; charset=utf-8"


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


def activation_response(answer: Answer) -> Response:
    if answer.fault is not None:
        return _faulty(answer.fault, answer)
    if answer.cik is not None:
        return Response(200, answer.cik.reveal().encode(), TEXT, answer.delay)
    return replace(Response.text(answer.status), delay=answer.delay)
