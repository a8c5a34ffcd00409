"""The secrets the log filter takes out of every record, as a last line of defence behind
:class:`~gatewayd.core.secret.Secret`, whose value no repr, f-string or log line shows.

Only what gatewayd handles as a secret of its own is remembered, and boundedly:
the CIKs it stores, reads from its keystore, receives from Exosite or checks
(at most :data:`MAX_CIKS` hex ones and as many others, the least recently seen
forgotten first), and its
tokens and passwords (at most :data:`MAX_OTHERS`). A CIK a node merely offers is
not remembered unless it is checked. A hex CIK (40 hex digits, as Exosite's are)
is found in a text by its shape and looked up in a set; a CIK of other visible
characters by looking up each 40-character stretch of the text. Either way the
cost of a log line depends on its length, not on how many CIKs are remembered;
the few others are searched for one by one.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Final

from gatewayd.core.protocol import CIK_LENGTH, cik_shape
from gatewayd.core.secret import Secret

MASK: Final = "<secret>"
MAX_CIKS: Final = 16_384
MAX_OTHERS: Final = 64
MIN_LENGTH: Final = 6
"""Shorter values are not redacted: they would blank out ordinary words."""
_CIK_SHAPE: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")


class Redactions:
    """Secrets to take out of texts; safe to share between threads."""

    def __init__(self, max_ciks: int = MAX_CIKS, max_others: int = MAX_OTHERS) -> None:
        self._max_ciks = max_ciks
        self._max_others = max_others
        self._ciks: OrderedDict[str, None] = OrderedDict()
        """Hex CIKs, the most recently seen last."""
        self._odd: OrderedDict[str, None] = OrderedDict()
        """CIKs of other characters, the same way."""
        self._others: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def remember(self, value: Secret | str) -> None:
        """Redact ``value`` from every text from now on (until it is among the oldest of
        more than the bound)."""
        text = value.reveal() if isinstance(value, Secret) else value
        if len(text) < MIN_LENGTH:
            return
        with self._lock:
            if _CIK_SHAPE.fullmatch(text):
                self._keep(self._ciks, text)
            elif cik_shape(text) is None:
                self._keep(self._odd, text)
            elif text not in self._others:
                self._others = (*self._others, text)[-self._max_others :]

    def _keep(self, ciks: OrderedDict[str, None], cik: str) -> None:
        ciks[cik] = None
        ciks.move_to_end(cik)
        if len(ciks) > self._max_ciks:
            ciks.popitem(last=False)

    def redact(self, text: str) -> str:
        """``text`` with every remembered secret replaced by a mask."""
        ciks, odd = self._ciks, self._odd
        if ciks and _CIK_SHAPE.search(text):
            text = _CIK_SHAPE.sub(lambda m: MASK if m.group(0) in ciks else m.group(0), text)
        if odd and len(text) >= CIK_LENGTH:
            stretches = {text[i : i + CIK_LENGTH] for i in range(len(text) - CIK_LENGTH + 1)}
            for cik in [stretch for stretch in stretches if stretch in odd]:
                text = text.replace(cik, MASK)
        for value in self._others:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def known(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._ciks) | frozenset(self._odd) | frozenset(self._others)

    def __len__(self) -> int:
        return len(self._ciks) + len(self._odd) + len(self._others)


REDACTIONS: Final = Redactions()
"""The process's one set: the log handler's filter reads it (:mod:`gatewayd.adapters.logs`)."""


def remember(value: Secret | str) -> None:
    """Remember a token or a password (or a CIK)."""
    REDACTIONS.remember(value)


def remember_cik(value: Secret) -> None:
    """Remember a CIK: a value of any other shape (a body that is no CIK) is not kept."""
    if cik_shape(value.reveal()) is None:
        REDACTIONS.remember(value)


def redact(text: str) -> str:
    return REDACTIONS.redact(text)


def known() -> frozenset[str]:
    """Every secret remembered now."""
    return REDACTIONS.known()
