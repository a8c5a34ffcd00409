"""The CIKs a serial has had retired: every one kept, with when and why; none is handed out
again, nor taken back from a bundle.

The keystore keeps a serial's retired CIKs as one entry, the JSON array :func:`encode`
writes (one object per CIK: ``cik``, ``at`` and ``why``), oldest first; a bundle carries
the same objects in each node's entry (:mod:`gatewayd.core.entries`). An entry written
by a gatewayd that kept one retired CIK per serial holds that CIK alone: it is read as
one retired CIK whose time and reason were not recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gatewayd.core.secret import Secret, cik_shape

REFUSED_OR_ROTATED: Final = "refused by Exosite, or rotated away"
"""Why, when the caller does not say: Exosite refuses the CIK (also after a re-enable)."""
REPLACED: Final = "replaced by an import"
"""Why a stored CIK that a bundle's replaced (``--prefer-bundle``) was retired."""
UNRECORDED: Final = "not recorded"
"""Why, for the one retired CIK an earlier gatewayd kept without when and why."""
WHY_LENGTH: Final = 200
"""The longest reason kept, in characters."""
_YEAR_10000: Final = 253_402_300_800
"""The first second of the year 10000, which no time shown can reach."""


class RetiredError(ValueError):
    """A value that is not a serial's retired CIKs; its words never quote a CIK."""


@dataclass(frozen=True, slots=True)
class Retired:
    """A retired CIK of a serial. ``at``: when it was retired, on the wall clock (seconds
    since the epoch; None when not recorded); ``why``: in words, never the CIK."""

    cik: Secret
    at: float | None
    why: str


def retired_ciks(retired: Iterable[Retired]) -> frozenset[Secret]:
    return frozenset(one.cik for one in retired)


def added(kept: Sequence[Retired], more: Iterable[Retired]) -> tuple[Retired, ...]:
    """``kept`` and, after them, those of ``more`` whose CIK is in neither (the first of
    each CIK stays: it says when and why the CIK was first retired)."""
    seen = set(retired_ciks(kept))
    result = list(kept)
    for one in more:
        if one.cik not in seen:
            seen.add(one.cik)
            result.append(one)
    return tuple(result)


def as_object(one: Retired) -> dict[str, Any]:
    """One retired CIK as a JSON object (the CIK revealed: the object is a secret)."""
    return {"cik": one.cik.reveal(), "at": one.at, "why": one.why}


def of_object(made: object) -> Retired:
    """The retired CIK an object holds; RetiredError for an object that is none."""
    if not isinstance(made, dict):
        raise RetiredError("a retired CIK is not an object")
    cik, at, why = made.get("cik"), made.get("at"), made.get("why")
    if not isinstance(cik, str) or cik_shape(cik) is not None:
        raise RetiredError("a retired CIK holds something that is not a CIK")
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < _YEAR_10000
    ):
        raise RetiredError("a retired CIK's time is not a time since 1970 (in seconds)")
    if not isinstance(why, str) or not 0 < len(why) <= WHY_LENGTH or not why.isprintable():
        raise RetiredError(
            f"a retired CIK's reason is not text of 1 to {WHY_LENGTH} printable characters"
        )
    return Retired(Secret(cik), None if at is None else float(at), why)


def encode(retired: Sequence[Retired]) -> str:
    """A serial's retired CIKs as the keystore keeps them."""
    return json.dumps([as_object(one) for one in retired], separators=(",", ":"))


def decode(text: str) -> tuple[Retired, ...]:
    """A serial's retired CIKs as the keystore keeps them; RetiredError for a value that
    is none."""
    if cik_shape(text) is None:  # the one CIK an earlier gatewayd kept
        return (Retired(Secret(text), None, UNRECORDED),)
    try:
        made = json.loads(text)
    except ValueError:
        raise RetiredError("the retired CIKs are not JSON") from None
    if not isinstance(made, list):
        raise RetiredError("the retired CIKs are not a list")
    return tuple(of_object(one) for one in made)
