"""A node's record and CIK as one JSON object: what a bundle of ``gatewayctl export`` holds
for each node, and what ``gatewayctl import`` hands a running gatewayd.

The object has every field of :class:`~gatewayd.core.model.Node` by name, the state
and reason as stored, ``cik``: the CIK, or null when none was stored, and ``retired``:
the CIKs of the serial that were retired, each with when and why
(:mod:`gatewayd.core.retired`), oldest first; an entry without it (written before
bundles carried them) has none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Final

from gatewayd.core.errors import GatewaydError
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.protocol import serial_level
from gatewayd.core.retired import Retired, RetiredError, as_object, of_object
from gatewayd.core.secret import Secret, cik_shape

FIELDS: Final = tuple(field.name for field in dataclasses.fields(Node))


class EntryError(GatewaydError):
    """An object that is not a node's record and CIK."""


def entry(node: Node, cik: Secret | None, retired: Sequence[Retired] = ()) -> dict[str, Any]:
    """``node``, its CIK and its retired CIKs as one object (the CIKs revealed: the object
    is a secret)."""
    made: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(node, name)
        made[name] = value.value if isinstance(value, State | Reason) else value
    made["cik"] = None if cik is None else cik.reveal()
    made["retired"] = [as_object(one) for one in retired]
    return made


def node_of(made: object) -> tuple[Node, Secret | None]:
    """The record and CIK an object holds; EntryError for one that is no such, which
    names the serial when it has one (never the CIK)."""
    sn = made.get("sn") if isinstance(made, dict) else None
    named = f"the entry of {sn!r}" if isinstance(sn, str) else "an entry"
    if not isinstance(made, dict):
        raise EntryError(f"{named} is not a node record")
    try:
        fields = {name: made[name] for name in FIELDS}
    except KeyError as exc:
        raise EntryError(f"{named} lacks {exc.args[0]!r}") from None
    try:
        fields["state"] = State(fields["state"])
        fields["reason"] = None if fields["reason"] is None else Reason(fields["reason"])
    except ValueError:
        raise EntryError(f"{named} has an unknown state or reason") from None
    problem = _wrong_types(fields)
    if problem is not None:
        raise EntryError(f"{named}: {problem}")
    cik = made.get("cik")
    if cik is not None and (not isinstance(cik, str) or cik_shape(cik) is not None):
        raise EntryError(f"{named} holds something that is not a CIK")
    return Node(**fields), None if cik is None else Secret(cik)


def retired_of(made: object) -> tuple[Retired, ...]:
    """The retired CIKs of an entry :func:`node_of` takes; EntryError for a list that is no
    such, or that holds the entry's own CIK (never quoted)."""
    if not isinstance(made, dict):
        raise EntryError("an entry is not a node record")
    named = f"the entry of {made.get('sn')!r}"
    listed = made.get("retired", [])
    if not isinstance(listed, list):
        raise EntryError(f"{named}: 'retired' is not a list")
    try:
        retired = tuple(of_object(one) for one in listed)
    except RetiredError as exc:
        raise EntryError(f"{named}: {exc}") from None
    if made.get("cik") in {one.cik.reveal() for one in retired}:
        raise EntryError(f"{named} holds a CIK it also lists as retired")
    return retired


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "sn": (str,),
    "vendor": (str,),
    "model": (str,),
    "first_seen": (int, float),
    "attempts": (int,),
    "next_attempt": (int, float, type(None)),
    "last_error": (str, type(None)),
    "http_status": (int, type(None)),
    "rejected_at": (int, float, type(None)),
    "activated_at": (int, float, type(None)),
    "expiry_warned": (bool,),
    "request_started": (int, float, type(None)),
    "request_form": (str, type(None)),
    "uncertain": (bool,),
}
"""The types each field of a record may have, beside its state and reason."""


_LARGEST: Final = 2**63 - 1
"""The largest whole number the state database keeps."""


def _wrong_types(fields: dict[str, Any]) -> str | None:
    """What of a record's fields is not of its type or range, or None."""
    for name, types in _TYPES.items():
        value = fields[name]
        if isinstance(value, bool) is not (types == (bool,)) or not isinstance(value, types):
            return f"{name!r} is not of its type"
        if types == (str,) and not value:
            return f"{name!r} is empty"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name!r} is not a finite number"
        if isinstance(value, int) and not -_LARGEST <= value <= _LARGEST:
            return f"{name!r} is out of range"
        if isinstance(value, str) and not _encodes(value):
            return f"{name!r} is not UTF-8 text"
    if not serial_level(fields["sn"]):
        return "'sn' cannot be a serial number (a topic level)"
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which JSON lets through
        return False
    return True
