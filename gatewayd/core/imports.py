"""A bundle's entries imported (``gatewayctl import``): the words the operator is told, and
the answers counted.

What becomes of each entry is the machine's, the same whether gatewayd runs or not:
an entry is an :class:`~gatewayd.core.events.Imported` event, the keystore is read
for its serial, the entry is decided on
(:func:`gatewayd.core.transitions.imported_found`), the bundle's retired CIKs are
kept and a stored CIK it replaces retired (kept apart, never handed out again; a
CIK that cannot be retired is not replaced), then the entry is taken or answered.
A node taken has its CIK stored (durably, as any CIK) before its record, the
journal line ``imported`` and the operator's answer; a node that was waiting for
its credentials in the running gatewayd (pending, rejected, needing a re-enable) is
sent them at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from gatewayd.core.actions import Result

UNCHANGED: Final = "already held, unchanged"
"""The operator's answer for a node left as it is."""
KEPT: Final = (
    "kept as stored: its CIK differs from the bundle's (--prefer-bundle takes the bundle's)"
)
"""The answer for a node whose stored CIK differs from the bundle's."""
RETIRED: Final = "not imported: its CIK in the bundle was retired here (refused, or rotated away)"
"""The answer for an entry whose CIK the gateway has retired."""
BUSY: Final = "not imported: a request about it is under way; import it again later"
"""The answer for an entry of a node with something under way."""
UNRETIRED: Final = "not imported: the CIK stored for it cannot be retired"
"""The answer for an entry that would replace a stored CIK the keystore cannot retire."""
UNKEPT: Final = "not imported: the CIKs the bundle has retired for it cannot be kept"
"""The answer for an entry whose retired CIKs the keystore cannot keep."""


class Answer(enum.StrEnum):
    """What became of a bundle's entry, as gatewayctl counts it (the names are the keys of
    the running gatewayd's answer)."""

    IMPORTED = "imported"
    UNCHANGED = "unchanged"
    """Already held: left as it is."""
    KEPT = "kept"
    """Kept as stored: the bundle's CIK or record is not taken over what is held here."""
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Decision(Result):
    """What became of a bundle's entry: the operator's answer in words (``ok``,
    ``message``), and which of the answers counted it is."""

    answer: Answer = Answer.REFUSED


def counted(counts: dict[Answer, int], where: str) -> str:
    """What became of a bundle's entries, as both imports print it."""
    return (
        f"{counts[Answer.IMPORTED]} nodes imported into {where}, "
        f"{counts[Answer.UNCHANGED]} already held, {counts[Answer.KEPT]} kept as stored, "
        f"{counts[Answer.REFUSED]} refused"
    )
