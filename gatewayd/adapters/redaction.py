"""The secrets the log filter takes out of every record, as a last line of defence behind
:class:`~gatewayd.core.secret.Secret`, whose value no repr, f-string or log line shows.

Only what gatewayd handles as a secret of its own is remembered, and boundedly:

- the CIKs it stores, reads from its keystore or receives from Exosite: at most
  :data:`MAX_CIKS` of Exosite's hex form and as many of other visible characters,
  the least recently seen forgotten first;
- the CIKs nodes offer that it checks with Exosite, apart (at most
  :data:`MAX_CHECKED`), so that junk pushes none of its own out;
- its tokens and passwords, whatever their shape (at most :data:`MAX_OTHERS`).

A CIK a node merely offers is not remembered unless it is checked. A hex CIK is
found in a text by its shape and looked up in a set; a CIK of other visible
characters by looking up each 40-character stretch of the text. Either way the
cost of a log line depends on its length, not on how many CIKs are remembered;
the few others are searched for one by one.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Final

from gatewayd.core.secret import CIK_LENGTH, Secret, cik_shape

MASK: Final = "<secret>"
MAX_CIKS: Final = 16_384
MAX_CHECKED: Final = 1_024
MAX_OTHERS: Final = 64
MIN_LENGTH: Final = 6
"""Shorter values are not redacted: they would blank out ordinary words."""
_CIK_SHAPE: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")


class _Ciks:
    """CIKs, the most recently seen last: hex ones apart from the others."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.hex: OrderedDict[str, None] = OrderedDict()
        self.odd: OrderedDict[str, None] = OrderedDict()

    def keep(self, cik: str) -> None:
        kept = self.hex if _CIK_SHAPE.fullmatch(cik) else self.odd
        kept[cik] = None
        kept.move_to_end(cik)
        if len(kept) > self.most:
            kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self.hex) + len(self.odd)


class Redactions:
    """Secrets to take out of texts; safe to share between threads."""

    def __init__(
        self, max_ciks: int = MAX_CIKS, max_checked: int = MAX_CHECKED, max_others: int = MAX_OTHERS
    ) -> None:
        self._own = _Ciks(max_ciks)
        self._checked = _Ciks(max_checked)
        self._max_others = max_others
        self._others: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def remember(self, value: Secret | str) -> None:
        """Redact ``value``, a token or a password, from every text from now on."""
        text = value.reveal() if isinstance(value, Secret) else value
        if len(text) < MIN_LENGTH:
            return
        with self._lock:
            if text not in self._others:
                self._others = (*self._others, text)[-self._max_others :]

    def remember_cik(self, value: Secret, *, checked: bool = False) -> None:
        """Redact ``value``, a CIK (``checked``: one a node offered, checked with Exosite),
        until it is among the least recently seen of more than the bound; a value that is
        no CIK is not kept."""
        text = value.reveal()
        if cik_shape(text) is not None:
            return
        with self._lock:
            (self._checked if checked else self._own).keep(text)

    def redact(self, text: str) -> str:
        """``text`` with every remembered secret replaced by a mask."""
        pools = (self._own, self._checked)
        if any(pool.hex for pool in pools) and _CIK_SHAPE.search(text):
            text = _CIK_SHAPE.sub(lambda m: _masked(m.group(0), pools), text)
        if any(pool.odd for pool in pools) and len(text) >= CIK_LENGTH:
            stretches = {text[i : i + CIK_LENGTH] for i in range(len(text) - CIK_LENGTH + 1)}
            for cik in [s for s in stretches if any(s in pool.odd for pool in pools)]:
                text = text.replace(cik, MASK)
        for value in self._others:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def known(self) -> frozenset[str]:
        with self._lock:
            pools = (self._own, self._checked)
            ciks = {cik for pool in pools for cik in (*pool.hex, *pool.odd)}
            return frozenset(ciks) | frozenset(self._others)

    def __len__(self) -> int:
        return len(self._own) + len(self._checked) + len(self._others)


def _masked(cik: str, pools: tuple[_Ciks, ...]) -> str:
    return MASK if any(cik in pool.hex for pool in pools) else cik


REDACTIONS: Final = Redactions()
"""The process's one set: the log handler's filter reads it (:mod:`gatewayd.adapters.logs`)."""


def remember(value: Secret | str) -> None:
    """Remember a token or a password."""
    REDACTIONS.remember(value)


def remember_cik(value: Secret, *, checked: bool = False) -> None:
    """Remember a CIK (``checked``: one a node offered, checked with Exosite)."""
    REDACTIONS.remember_cik(value, checked=checked)


def redact(text: str) -> str:
    return REDACTIONS.redact(text)


def known() -> frozenset[str]:
    """Every secret remembered now."""
    return REDACTIONS.known()
