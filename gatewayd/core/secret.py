"""A wrapper that keeps a secret out of reprs, f-strings and log lines.

Every secret wrapped in this process is also remembered, so that
:func:`redact` can take it out of any text: the log handler's filter does so
for every record, as a last line of defence behind the wrapper itself.
CIK-shaped values (40 hex digits) are kept in a set and found by their shape;
the few others (tokens, passwords) are searched for one by one.
"""

from __future__ import annotations

import ctypes
import re
import threading
from typing import Final

_MASK: Final = "<secret>"
_MIN_LENGTH: Final = 6
"""Shorter values are not redacted: they would blank out ordinary words."""
_CIK_SHAPE: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")

_ciks: set[str] = set()
_others: tuple[str, ...] = ()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Redact ``value`` from every log record from now on."""
    global _others  # noqa: PLW0603 (one registry per process, read without a lock)
    if len(value) < _MIN_LENGTH:
        return
    if _CIK_SHAPE.fullmatch(value):
        _ciks.add(value)
        return
    with _lock:
        if value not in _others:
            _others = (*_others, value)


def known() -> frozenset[str]:
    """Every secret remembered so far."""
    return frozenset(_ciks) | frozenset(_others)


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by a mask."""
    if _ciks and _CIK_SHAPE.search(text):
        text = _CIK_SHAPE.sub(lambda m: _MASK if m.group(0) in _ciks else m.group(0), text)
    for value in _others:
        if value in text:
            text = text.replace(value, _MASK)
    return text


class Secret:
    """Holds a CIK or a token. ``str()`` and ``repr()`` never show the value.

    The value is only reachable through :meth:`reveal`, so a place that puts a
    secret on the wire or in the keyring says so in the code.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def no_core_dumps() -> bool:
    """Make this process not dumpable (no core file holds its secrets); False if it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


_PR_SET_DUMPABLE: Final = 4
