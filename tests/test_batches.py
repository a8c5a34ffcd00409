"""The executor's batches: what waits for a flush, what does not, and in which order.

The executor runs with a real keystore (gatewayd's file store in a temp folder)
and a real state database; the broker link and the Exosite client record what
they are asked; the writer is played by the test, which hands back each batch's
:class:`~gatewayd.daemon.writer.Flushed` when it chooses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from gatewayd.adapters.filestore import FileStore
from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.core import protocol
from gatewayd.core.actions import (
    Activate,
    Answer,
    Log,
    LookupCik,
    Publish,
    Result,
    RetireCik,
    SaveNode,
    StoreCik,
)
from gatewayd.core.errors import StateError
from gatewayd.core.events import CikLookedUp, RequestUnsent
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.secret import Secret
from gatewayd.daemon.executor import Executor
from gatewayd.daemon.writer import Flushed

VENDOR, MODEL = "acme", "thermo-v1"
CIK = Secret("a" * 40)


class Recorder:
    """The broker link and the Exosite client: what they were asked, in order."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []
        self.paused = False

    def publish(self, _topic: str, payload: bytes, **_kwargs: object) -> None:
        body = json.loads(payload)
        self.said.append(("publish", f"{body['sn']} {body['status']}"))

    def submit(self, sn: str, _vendor: str, _model: str) -> None:
        self.said.append(("request", sn))

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


class Rig:
    def __init__(self, folder: Path) -> None:
        self.keystore = Keystore(FileStore(folder / "keyring"))
        self.state = StateDB.in_dir(folder)
        self.state.defer_sync()
        self.out = Recorder()
        self.submitted: list[tuple[int, Sequence[StoreCik]]] = []
        self.executor = Executor(
            self.keystore,
            self.state,
            self.out,  # type: ignore[arg-type]
            self.out,  # type: ignore[arg-type]
            protocol.Topics("gatewayd", "gw1"),
            lambda _action: None,
            lambda number, ciks: self.submitted.append((number, ciks)),
        )

    def flush(self, *, error: str | None = None) -> None:
        """The writer is done with the batch under way: its CIKs stored (unless ``error``)."""
        number, ciks = self.submitted[-1]
        if error is None:
            for cik in ciks:
                self.keystore.store(cik.vendor, cik.model, cik.sn, cik.cik)
            self.executor.flushed(Flushed(number, tuple(ciks)))
        else:
            self.executor.flushed(
                Flushed(number, failed=tuple((c, error) for c in ciks), error=error)
            )
        self.executor.cut()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.state.close()


def node(sn: str, state: State) -> Node:
    return Node(sn, VENDOR, MODEL, state, 1_700_000_000.0)


def answered(sn: str) -> list[object]:
    """What the engine asks for when Exosite issues a CIK for ``sn``."""
    return [
        StoreCik(sn, VENDOR, MODEL, CIK),
        SaveNode(node(sn, State.ACTIVATED)),
        Publish(Answer(sn, "activated", cik=CIK)),
        Log("activated", 20, "credentials activated", sn),
    ]


def announced(sn: str) -> list[object]:
    """What the engine asks for when a new node announces."""
    return [SaveNode(node(sn, State.ACTIVATING)), Activate(sn, VENDOR, MODEL)]


def test_a_cik_is_published_only_once_its_batch_is_flushed(rig: Rig) -> None:
    done: list[str] = []
    rig.executor.run(answered("SN-1"), lambda: done.append("SN-1"))  # type: ignore[arg-type]
    rig.executor.cut()
    assert [n for n, _ in rig.submitted] == [1]
    assert rig.out.said == []
    assert done == []
    assert rig.state.get("SN-1") is None  # recorded activated only after the flush
    rig.flush()
    assert rig.out.said == [("publish", "SN-1 activated")]
    assert done == ["SN-1"]
    rig.executor.cut()
    assert rig.state.get("SN-1") == node("SN-1", State.ACTIVATED)


def test_a_request_waits_for_its_write_ahead_record_to_be_flushed(rig: Rig) -> None:
    rig.executor.run(announced("SN-1"))  # type: ignore[arg-type]
    assert rig.out.said == []
    rig.executor.cut()
    assert rig.out.said == []
    rig.flush()
    assert rig.out.said == [("request", "SN-1")]


def test_other_nodes_are_answered_while_a_batch_is_flushed(rig: Rig) -> None:
    rig.keystore.store(VENDOR, MODEL, "SN-OLD", CIK)
    rig.executor.run(answered("SN-1"))  # type: ignore[arg-type]
    rig.executor.cut()
    rig.executor.run([LookupCik("SN-OLD", VENDOR, MODEL)])
    assert rig.executor.followups == [CikLookedUp("SN-OLD", CIK)]
    rig.executor.run([Publish(Answer("SN-BAD", "rejected"))])
    assert rig.out.said == [("publish", "SN-BAD rejected")]
    rig.flush()
    assert rig.out.said[-1] == ("publish", "SN-1 activated")


def test_a_node_s_later_actions_keep_their_order_behind_a_flush(rig: Rig) -> None:
    """A re-announce during the flush of a node's CIK is answered after the CIK's own
    answer, even when the re-announce's answer had to wait in the next batch."""
    rig.executor.run(answered("SN-1"))  # type: ignore[arg-type]
    rig.executor.cut()
    rig.executor.run(announced("SN-2"))  # type: ignore[arg-type]  # the next batch flushes
    rig.executor.run([Publish(Answer("SN-1", "republished"))])  # waits: SN-1 is flushing
    assert rig.out.said == []
    rig.flush()
    assert rig.out.said == [("publish", "SN-1 activated")]  # the CIK's own answer first
    rig.flush()
    assert rig.out.said[1:] == [("request", "SN-2"), ("publish", "SN-1 republished")]


def test_a_failed_flush_sends_no_request_and_holds_the_cik(rig: Rig) -> None:
    rig.executor.run(announced("SN-1"))  # type: ignore[arg-type]
    rig.executor.run(answered("SN-2"))  # type: ignore[arg-type]
    rig.executor.cut()
    rig.flush(error="cannot flush /var/lib/gatewayd: Input/output error")
    assert rig.executor.followups[0] == RequestUnsent(
        "SN-1", "cannot flush /var/lib/gatewayd: Input/output error"
    )
    assert ("request", "SN-1") not in rig.out.said
    assert "SN-2" in rig.executor.held
    assert rig.out.paused
    assert rig.executor.state_failing


def test_a_failed_commit_sends_no_request(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    retried = Result(ok=True, message="SN-1: retried")
    rig.executor.run([*announced("SN-1"), retried])  # type: ignore[list-item]
    assert rig.executor.results == [retried]  # told at once

    def refuse() -> None:
        raise StateError("cannot write to state.sqlite3: database or disk is full")

    monkeypatch.setattr(rig.state, "commit", refuse)
    rig.executor.cut()
    rig.flush()
    assert rig.executor.followups == [
        RequestUnsent("SN-1", "cannot write to state.sqlite3: database or disk is full")
    ]
    assert rig.out.said == []


@pytest.mark.parametrize("flushed", [True, False])
def test_a_refused_cik_is_retired_only_once_the_record_saying_so_is_on_disk(
    rig: Rig, flushed: bool
) -> None:
    """The record first, then the retire: when the record's flush fails, the CIK is kept
    (a restart would otherwise find the node activated with no CIK) and no request is
    sent."""
    rig.keystore.store(VENDOR, MODEL, "SN1", CIK)
    revoking = replace(node("SN1", State.ACTIVATING), reason=Reason.CIK_REVOKED)
    rig.executor.run(
        [SaveNode(revoking), RetireCik("SN1", VENDOR, MODEL), Activate("SN1", VENDOR, MODEL)]
    )
    assert rig.keystore.load(VENDOR, MODEL, "SN1") == CIK  # not before the flush
    rig.executor.cut()
    rig.flush(error=None if flushed else "EIO")
    stored = rig.keystore.load(VENDOR, MODEL, "SN1")
    if flushed:
        assert stored is None
        assert [r.cik for r in rig.keystore.retired(VENDOR, MODEL, "SN1")] == [CIK]
        assert rig.out.said == [("request", "SN1")]
    else:
        assert stored == CIK
        assert rig.out.said == []
        assert [type(e).__name__ for e in rig.executor.followups] == ["RequestUnsent"]
