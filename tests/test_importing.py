"""``gatewayctl import`` inside the daemon (:mod:`gatewayd.daemon.importing`): the engine, the
executor, a real keystore (gatewayd's file store) and a real state database; the writer is
played by the test (:class:`test_batches.Rig`), which flushes when it chooses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batches import MODEL, VENDOR, Rig

from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.core.actions import Activate, Log, RetireCik, SaveNode
from gatewayd.core.engine import Engine
from gatewayd.core.entries import entry
from gatewayd.core.errors import KeystoreError
from gatewayd.core.events import Event
from gatewayd.core.model import Node, Settings, State
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret
from gatewayd.daemon import importing
from gatewayd.daemon.control import Request

SETTINGS = Settings(vendor=VENDOR, model=MODEL, models=frozenset({MODEL}))
WALL = 1_700_000_000.0
OLD, NEW = Secret("e" * 40), Secret("b" * 40)


class Daemon:
    """The engine over the rig's executor, as the daemon's main thread drives them."""

    def __init__(self, rig: Rig, nodes: list[Node]) -> None:
        self.rig = rig
        self.engine = Engine(SETTINGS, nodes, lambda: 1000.0, lambda _low, high: high, lambda: WALL)

    def handle(self, event: Event) -> None:
        executor = self.rig.executor
        executor.run(self.engine.handle(event))
        while executor.followups:
            executor.run(self.engine.handle(executor.followups.pop(0)))

    def imports(self, made: list[object], *, prefer_bundle: bool = False) -> Request:
        request = Request("import", None, 30.0, made, prefer_bundle)
        assert request.take()
        importing.take(request, self.rig.executor, self.handle, stopping=False)
        return request


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.state.close()


def activated(sn: str) -> Node:
    return Node(sn, VENDOR, MODEL, State.ACTIVATED, WALL - 7200, activated_at=WALL - 3600)


def test_the_answer_waits_until_cik_and_record_are_flushed(rig: Rig, tmp_path: Path) -> None:
    daemon = Daemon(rig, [])
    request = daemon.imports([entry(activated("SN1"), NEW)])
    rig.executor.cut()
    assert len(rig.submitted) == 1  # the CIK's flush
    rig.flush()  # the record is written after it, into the next transaction
    assert not request.done.is_set()
    assert len(rig.submitted) == 2  # the record's commit, and its flush
    with StateDB.in_dir(tmp_path, readonly=True) as other:
        assert other.get("SN1") == activated("SN1")  # committed before the second flush
    rig.flush()
    assert request.done.is_set()
    assert request.reply == {
        "ok": True,
        "message": "1 imported, 0 already held, 0 kept as stored, 0 refused",
        "imported": 1,
        "unchanged": 0,
        "kept": 0,
        "refused": 0,
        "problems": [],
    }
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == NEW


def test_a_stored_cik_that_cannot_be_retired_is_not_replaced(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.keystore.store(VENDOR, MODEL, "SN1", OLD)

    def refuses(_keystore: Keystore, _vendor: str, _model: str, sn: str, **_: str) -> bool:
        raise KeystoreError(f"cannot retire the CIK of {sn!r}: disk full")

    monkeypatch.setattr(Keystore, "retire", refuses)
    daemon = Daemon(rig, [activated("SN1")])
    request = daemon.imports([entry(activated("SN1"), NEW)], prefer_bundle=True)
    rig.executor.cut()
    assert request.done.is_set()  # nothing was written: answered at once
    assert request.reply["ok"] is False
    assert request.reply["problems"] == [
        (
            "SN1: not imported: the CIK stored for it cannot be retired: "
            "cannot retire the CIK of 'SN1': disk full"
        )
    ]
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == OLD


def test_a_replaced_cik_is_retired_before_the_bundles_is_stored(rig: Rig) -> None:
    rig.keystore.store(VENDOR, MODEL, "SN1", OLD)
    daemon = Daemon(rig, [activated("SN1")])
    request = daemon.imports([entry(activated("SN1"), NEW)], prefer_bundle=True)
    assert [r.cik for r in rig.keystore.retired(VENDOR, MODEL, "SN1")] == [OLD]
    assert rig.keystore.load(VENDOR, MODEL, "SN1") is None  # until the flush
    rig.executor.cut()
    rig.flush()
    rig.flush()
    assert request.reply["imported"] == 1
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == NEW


def test_a_cik_retired_here_is_refused_and_nothing_is_published(rig: Rig) -> None:
    rig.keystore.store(VENDOR, MODEL, "SN1", OLD)
    assert rig.keystore.retire(VENDOR, MODEL, "SN1")
    rejected = Node("SN1", VENDOR, MODEL, State.NEEDS_REENABLE, WALL - 60)
    daemon = Daemon(rig, [rejected])
    request = daemon.imports([entry(activated("SN1"), OLD)])
    rig.executor.cut()
    assert request.reply["problems"] == [
        "SN1: not imported: its CIK in the bundle was retired here (refused, or rotated away)"
    ]
    assert daemon.engine.node("SN1") == rejected
    assert rig.keystore.load(VENDOR, MODEL, "SN1") is None
    assert rig.out.said == []


def test_an_entrys_retired_ciks_are_kept_before_it_is_taken_and_none_comes_back(
    rig: Rig,
) -> None:
    x, y = Secret("1" * 40), Secret("2" * 40)
    daemon = Daemon(rig, [])
    listed = (Retired(x, WALL - 100, "rotated"), Retired(y, None, "not recorded"))
    request = daemon.imports([entry(activated("SN1"), NEW, listed)])
    assert rig.keystore.retired(VENDOR, MODEL, "SN1") == listed  # on disk before the CIK
    assert rig.keystore.load(VENDOR, MODEL, "SN1") is None
    rig.executor.cut()
    rig.flush()
    rig.flush()
    assert request.reply["imported"] == 1
    for old in (x, y):
        again = daemon.imports([entry(activated("SN1"), old)], prefer_bundle=True)
        rig.executor.cut()
        assert again.reply["problems"] == [
            "SN1: not imported: its CIK in the bundle was retired here (refused, or rotated away)"
        ]
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == NEW
    assert rig.keystore.retired(VENDOR, MODEL, "SN1") == listed


def test_an_entry_whose_retired_ciks_cannot_be_kept_is_not_imported(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.keystore.store(VENDOR, MODEL, "SN1", OLD)

    def refuses(_keystore: Keystore, _vendor: str, _model: str, sn: str, _more: object) -> int:
        raise KeystoreError(f"cannot retire a CIK of {sn!r}: disk full")

    monkeypatch.setattr(Keystore, "add_retired", refuses)
    daemon = Daemon(rig, [activated("SN1")])
    listed = (Retired(Secret("1" * 40), WALL - 100, "rotated"),)
    request = daemon.imports([entry(activated("SN1"), NEW, listed)], prefer_bundle=True)
    rig.executor.cut()
    assert request.reply["problems"] == [
        (
            "SN1: not imported: the CIKs the bundle has retired for it cannot be kept: "
            "cannot retire a CIK of 'SN1': disk full"
        )
    ]
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == OLD  # not retired, not replaced
    assert rig.keystore.retired(VENDOR, MODEL, "SN1") == ()


def test_an_entry_out_of_range_is_refused_and_the_others_taken(rig: Rig) -> None:
    daemon = Daemon(rig, [])
    bad = entry(activated("SN1"), None) | {"attempts": 10**30}
    request = daemon.imports([bad, entry(activated("SN2"), NEW)])
    rig.executor.cut()
    rig.flush()
    rig.flush()
    assert request.reply["problems"] == [
        "not imported: the entry of 'SN1': 'attempts' is out of range"
    ]
    assert request.reply["imported"] == 1
    assert daemon.engine.node("SN1") is None


def test_a_mark_of_an_unretired_cik_ends_once_its_node_is_activated(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused CIK that cannot be retired holds back the request that follows; when
    no request follows (the node is activated instead), a later one is sent."""
    rig.keystore.store(VENDOR, MODEL, "SN1", OLD)

    def refuses(_keystore: Keystore, _vendor: str, _model: str, sn: str, **_why: str) -> bool:
        raise KeystoreError(f"cannot retire the CIK of {sn!r}: disk full")

    with monkeypatch.context() as patch:
        patch.setattr(Keystore, "retire", refuses)
        rig.executor.run([RetireCik("SN1", VENDOR, MODEL), SaveNode(activated("SN1"))])
    again = Node("SN1", VENDOR, MODEL, State.ACTIVATING, WALL)
    rig.executor.run([SaveNode(again), Activate("SN1", VENDOR, MODEL)])
    rig.executor.cut()
    rig.flush()
    assert rig.out.said == [("request", "SN1")]
    assert not rig.executor.followups
    assert not [a for a in rig.executor.results if isinstance(a, Log)]


def test_a_request_never_shows_the_ciks_it_carries() -> None:
    request = Request("import", None, 30.0, [entry(activated("SN1"), NEW)])
    assert NEW.reveal() not in repr(request)
    assert NEW.reveal() not in str(request)
