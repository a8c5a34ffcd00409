"""What each row of the node state machine does, written out by hand: the specification
test_engine holds ``gatewayd.core.transitions.TRANSITIONS`` and the engine to.

For a node's state before (None: no record) and a trigger: the state after (None: no
record) and the kinds of the actions the engine returns, in order, its logs left out.
The rows here and the table's are the same rows with the same state after, and
test_row drives the engine through each one. A row changes here when the behaviour
changes on purpose, never by copying the table.
"""

from __future__ import annotations

from gatewayd.core.model import State
from gatewayd.core.transitions import ANY, TAKEN, Special, Trigger

T = Trigger

NEW = None
ACTIVATING, RECOVERING, PENDING = State.ACTIVATING, State.RECOVERING, State.PENDING
ACTIVATED, REJECTED, NEEDS_REENABLE = State.ACTIVATED, State.REJECTED, State.NEEDS_REENABLE
ROTATING = State.ROTATING

EXPECTED: dict[tuple[State | Special | None, Trigger], tuple[State | Special | None, list[str]]] = {
    # (state before, trigger): (state after, the actions' kinds)
    # -- announces
    (NEW, T.ANNOUNCE): (ACTIVATING, ["SaveNode", "Activate"]),
    (NEW, T.ANNOUNCE_BUSY): (NEW, ["Publish"]),
    (ACTIVATING, T.ANNOUNCE): (ACTIVATING, []),
    (RECOVERING, T.ANNOUNCE): (RECOVERING, []),
    (PENDING, T.ANNOUNCE): (PENDING, ["Publish"]),
    (ACTIVATED, T.ANNOUNCE): (ACTIVATED, ["LookupCik"]),
    (REJECTED, T.ANNOUNCE): (REJECTED, ["Publish"]),
    (REJECTED, T.ANNOUNCE_LATE): (ACTIVATING, ["SaveNode", "Activate"]),
    (NEEDS_REENABLE, T.ANNOUNCE): (NEEDS_REENABLE, ["Publish"]),
    (NEEDS_REENABLE, T.ANNOUNCE_REENABLING): (NEEDS_REENABLE, ["Publish"]),
    (NEEDS_REENABLE, T.ANNOUNCE_LATE): (ACTIVATING, ["SaveNode", "Activate"]),
    (NEW, T.ANNOUNCE_MODEL): (NEW, ["Publish"]),
    (ACTIVATING, T.ANNOUNCE_MODEL): (ACTIVATING, ["Publish"]),
    (RECOVERING, T.ANNOUNCE_MODEL): (RECOVERING, ["Publish"]),
    (PENDING, T.ANNOUNCE_MODEL): (PENDING, ["Publish"]),
    (ACTIVATED, T.ANNOUNCE_MODEL): (ACTIVATED, ["Publish"]),
    (REJECTED, T.ANNOUNCE_MODEL): (REJECTED, ["Publish"]),
    (NEEDS_REENABLE, T.ANNOUNCE_MODEL): (NEEDS_REENABLE, ["Publish"]),
    (ROTATING, T.ANNOUNCE_MODEL): (ROTATING, ["Publish"]),
    # -- Exosite's answers
    (ACTIVATING, T.ISSUED): (ACTIVATED, ["StoreCik", "SaveNode", "Publish"]),
    (ACTIVATING, T.MALFORMED): (NEEDS_REENABLE, ["StoreCik", "SaveNode", "Publish"]),
    (ACTIVATING, T.MALFORMED_AUTO): (NEEDS_REENABLE, ["StoreCik", "SaveNode", "Reenable"]),
    (NEW, T.ISSUED_UNASKED): (NEW, ["StoreCik"]),
    (RECOVERING, T.ISSUED_UNASKED): (RECOVERING, ["StoreCik"]),
    (PENDING, T.ISSUED_UNASKED): (PENDING, ["StoreCik"]),
    (ACTIVATED, T.ISSUED_UNASKED): (ACTIVATED, ["StoreCik"]),
    (REJECTED, T.ISSUED_UNASKED): (REJECTED, ["StoreCik"]),
    (NEEDS_REENABLE, T.ISSUED_UNASKED): (NEEDS_REENABLE, ["StoreCik"]),
    (ROTATING, T.ISSUED_UNASKED): (ROTATING, ["StoreCik"]),
    (ACTIVATING, T.REFUSED): (REJECTED, ["SaveNode", "Publish"]),
    (ACTIVATING, T.CONFLICT): (ACTIVATING, ["LookupCik"]),
    (ACTIVATING, T.FAILED): (PENDING, ["SaveNode", "Publish"]),
    (ACTIVATING, T.FAILED_MAYBE): (PENDING, ["SaveNode", "Publish"]),
    # -- the keystore's answers
    (ACTIVATING, T.CIK_FOUND): (ACTIVATED, ["SaveNode", "Publish"]),
    (ACTIVATING, T.CIK_MISSING): (REJECTED, ["SaveNode", "Publish"]),
    (ACTIVATING, T.LOOKUP_FAILED): (PENDING, ["SaveNode", "Publish"]),
    (ACTIVATED, T.CIK_FOUND): (ACTIVATED, ["Publish"]),
    (ACTIVATED, T.CIK_MISSING): (REJECTED, ["SaveNode", "Publish"]),
    (ACTIVATED, T.LOOKUP_FAILED): (ACTIVATED, ["Publish"]),
    (RECOVERING, T.CIK_FOUND): (ACTIVATED, ["SaveNode", "Publish"]),
    (RECOVERING, T.CIK_MISSING): (ACTIVATING, ["SaveNode", "Activate"]),
    (RECOVERING, T.LOOKUP_FAILED): (PENDING, ["SaveNode", "Publish"]),
    # -- a CIK lost between Exosite's 200 and the keyring
    (ACTIVATING, T.CIK_LOST): (NEEDS_REENABLE, ["SaveNode", "Publish"]),
    (ACTIVATING, T.CIK_LOST_AUTO): (NEEDS_REENABLE, ["SaveNode", "Reenable"]),
    (NEEDS_REENABLE, T.REENABLED): (ACTIVATING, ["SaveNode", "Activate"]),
    (NEEDS_REENABLE, T.REENABLE_FAILED): (NEEDS_REENABLE, ["SaveNode", "Publish"]),
    # -- a request whose record cannot be saved
    (ACTIVATING, T.UNSAVED): (PENDING, ["SaveNode", "Publish"]),
    (NEEDS_REENABLE, T.UNSAVED): (PENDING, ["SaveNode", "Publish"]),
    # -- gatewayd starts and stops
    (ACTIVATING, T.RESTARTED): (RECOVERING, ["LookupCik"]),
    (NEEDS_REENABLE, T.RESTARTED_REENABLING): (NEEDS_REENABLE, ["Reenable"]),
    (NEW, T.STOPPING): (PENDING, ["SaveNode"]),
    (RECOVERING, T.STOPPING): (PENDING, ["SaveNode"]),
    (PENDING, T.STOPPING): (PENDING, []),
    (REJECTED, T.STOPPING): (PENDING, ["SaveNode"]),
    (NEEDS_REENABLE, T.STOPPING): (PENDING, ["SaveNode", "Result"]),
    (NEEDS_REENABLE, T.REENABLED_STOPPING): (PENDING, ["SaveNode"]),
    # -- timers
    (PENDING, T.RETRY_DUE): (ACTIVATING, ["SaveNode", "Activate"]),
    (ACTIVATING, T.EXPIRY_DUE): (ACTIVATING, ["SaveNode"]),
    (RECOVERING, T.EXPIRY_DUE): (RECOVERING, ["LookupCik", "SaveNode"]),
    (PENDING, T.EXPIRY_DUE): (PENDING, ["SaveNode"]),
    (REJECTED, T.EXPIRY_DUE): (REJECTED, ["SaveNode"]),
    (NEEDS_REENABLE, T.EXPIRY_DUE): (NEEDS_REENABLE, ["SaveNode"]),
    # -- a node says Exosite refuses its CIK
    (ACTIVATED, T.ANNOUNCE_CHECK): (ACTIVATED, ["LookupCik"]),
    (ACTIVATED, T.CHECK_FOUND): (ACTIVATED, ["CheckCik"]),
    (ACTIVATED, T.OFFERED_STORED): (ACTIVATED, ["Publish"]),
    (ACTIVATED, T.CIK_ACCEPTED): (ACTIVATED, ["Publish"]),
    (ACTIVATED, T.CHECK_UNKNOWN): (ACTIVATED, ["Publish"]),
    (ACTIVATED, T.CIK_REFUSED): (ACTIVATING, ["SaveNode", "RetireCik", "Activate"]),
    (ACTIVATED, T.CHECK_OFFERED): (ACTIVATED, ["CheckCik"]),
    (ACTIVATED, T.ADOPTED): (ACTIVATED, ["StoreCik", "SaveNode", "RetireCik", "Publish"]),
    (ACTIVATED, T.STOPPING): (PENDING, ["SaveNode", "RetireCik"]),
    (ACTIVATING, T.CIK_REVOKED): (NEEDS_REENABLE, ["SaveNode", "Publish"]),
    (ACTIVATING, T.CIK_REVOKED_AUTO): (NEEDS_REENABLE, ["SaveNode", "Reenable"]),
    # -- a CIK found after Exosite refused the node's
    (ACTIVATING, T.REVOKED_FOUND): (ACTIVATING, ["CheckCik"]),
    (RECOVERING, T.REVOKED_FOUND): (RECOVERING, ["CheckCik"]),
    (ACTIVATING, T.CIK_ACCEPTED): (ACTIVATED, ["SaveNode", "Publish"]),
    (RECOVERING, T.CIK_ACCEPTED): (ACTIVATED, ["SaveNode", "Publish"]),
    (ACTIVATING, T.CIK_REFUSED): (ACTIVATING, ["SaveNode", "RetireCik", "Activate"]),
    (RECOVERING, T.CIK_REFUSED): (ACTIVATING, ["SaveNode", "RetireCik", "Activate"]),
    (ACTIVATING, T.CHECK_UNKNOWN): (PENDING, ["SaveNode", "Publish"]),
    (RECOVERING, T.CHECK_UNKNOWN): (PENDING, ["SaveNode", "Publish"]),
    (ACTIVATING, T.STOPPING): (PENDING, ["SaveNode"]),
    # -- an activated record whose CIK was retired, none stored
    (ACTIVATED, T.RETIRED_ONLY): (NEEDS_REENABLE, ["SaveNode", "Publish"]),
    (ACTIVATED, T.RETIRED_ONLY_AUTO): (NEEDS_REENABLE, ["SaveNode", "Reenable"]),
    # -- a node offers its CIK where none is stored
    (NEW, T.ANNOUNCE_ADOPT): (NEW, ["CheckCik"]),
    (REJECTED, T.ANNOUNCE_ADOPT): (REJECTED, ["CheckCik"]),
    (NEEDS_REENABLE, T.ANNOUNCE_ADOPT): (NEEDS_REENABLE, ["CheckCik"]),
    (NEW, T.ANNOUNCE_CHECKING): (NEW, []),
    (REJECTED, T.ANNOUNCE_CHECKING): (REJECTED, []),
    (NEEDS_REENABLE, T.ANNOUNCE_CHECKING): (NEEDS_REENABLE, []),
    (NEW, T.ADOPTED): (ACTIVATED, ["StoreCik", "SaveNode", "Publish"]),
    (REJECTED, T.ADOPTED): (ACTIVATED, ["StoreCik", "SaveNode", "Publish"]),
    (NEEDS_REENABLE, T.ADOPTED): (ACTIVATED, ["StoreCik", "SaveNode", "Publish"]),
    # -- the operator rotates a CIK
    (ACTIVATED, T.ROTATE): (ROTATING, ["SaveNode", "Reenable", "Result"]),
    (ROTATING, T.RESTARTED_ROTATING): (ROTATING, ["Reenable"]),
    (ROTATING, T.ANNOUNCE): (ROTATING, ["Publish"]),
    (ROTATING, T.REENABLED): (ACTIVATING, ["RetireCik", "SaveNode", "Activate"]),
    (ROTATING, T.REENABLED_STOPPING): (PENDING, ["RetireCik", "SaveNode"]),
    (ROTATING, T.REENABLE_FAILED): (ACTIVATED, ["SaveNode"]),
    (ROTATING, T.REENABLE_MAYBE): (ROTATING, ["SaveNode"]),
    (ROTATING, T.RETRY_DUE): (ROTATING, ["Reenable"]),
    (ROTATING, T.STOPPING): (ROTATING, []),
    (ACTIVATING, T.ISSUED_ROTATED): (ACTIVATED, ["StoreCik", "SaveNode", "Publish"]),
    # -- the operator: republish, retry, forget
    (ACTIVATED, T.REPUBLISH): (ACTIVATED, ["LookupCik"]),
    (PENDING, T.RETRY): (ACTIVATING, ["SaveNode", "Activate", "Result"]),
    (REJECTED, T.RETRY): (ACTIVATING, ["SaveNode", "Activate", "Result"]),
    (NEEDS_REENABLE, T.RETRY): (ACTIVATING, ["SaveNode", "Activate", "Result"]),
    (PENDING, T.FORGET): (NEW, ["DeleteNode", "Result"]),
    (ACTIVATED, T.FORGET): (NEW, ["DeleteNode", "Result"]),
    (REJECTED, T.FORGET): (NEW, ["DeleteNode", "Result"]),
    (NEEDS_REENABLE, T.FORGET): (NEW, ["DeleteNode", "Result"]),
    # -- a bundle's entry, in any state (ANY: it stays in it; TAKEN: the bundle's record)
    (ANY, T.IMPORT): (ANY, ["LookupCik"]),
    (ANY, T.IMPORT_REFUSED): (ANY, ["Decision"]),
    (ANY, T.IMPORT_KEPT): (ANY, ["Decision"]),
    (ANY, T.IMPORT_UNCHANGED): (ANY, ["KeepRetired"]),
    (ANY, T.IMPORT_TAKE): (ANY, ["KeepRetired"]),
    (ANY, T.IMPORT_LEFT): (ANY, ["Decision"]),
    (ANY, T.IMPORT_UNKEPT): (ANY, ["Decision"]),
    (ANY, T.IMPORT_TAKEN): (TAKEN, ["StoreCik", "SaveNode", "Decision"]),
}
