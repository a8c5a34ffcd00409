"""A wrapper that keeps a secret out of reprs, f-strings and log lines, and what a CIK looks like.

The value is only reachable through :meth:`Secret.reveal`. Wrapping a value
remembers nothing and guards no memory: the log filter's last line of defence,
which takes known secrets out of any text, is an adapter's
(:mod:`gatewayd.adapters.redaction`), and so is keeping the process's memory out
of core files (:mod:`gatewayd.adapters.coredumps`).
"""

from __future__ import annotations

from typing import Final

_MASK: Final = "<secret>"

CIK_LENGTH: Final = 40
CIK_CHARACTERS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - set("<>&")
"""Visible ASCII, without markup: what a CIK may be made of (Exosite's are hex)."""


def cik_shape(text: str) -> str | None:
    """What keeps ``text`` from being a CIK, in words that never quote it; None if nothing."""
    if not text:
        return "empty"
    if len(text) != CIK_LENGTH:
        return f"{len(text)} bytes, not {CIK_LENGTH}"
    if not CIK_CHARACTERS.issuperset(text):
        return f"not {CIK_LENGTH} visible ASCII characters without markup"
    return None


class Secret:
    """Holds a CIK or a token. ``str()`` and ``repr()`` never show the value.

    The value is only reachable through :meth:`reveal`, so a place that puts a
    secret on the wire or in the keyring says so in the code.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

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
