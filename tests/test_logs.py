"""Journal fields of node events, and the choice between the journal and stderr."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import root_logging_restored

from gatewayd import logs
from gatewayd.events import Log, State


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    logs.node_log.addHandler(handler)
    logs.node_log.setLevel(logging.DEBUG)
    yield handler
    logs.node_log.removeHandler(handler)
    logs.node_log.setLevel(logging.NOTSET)


def test_a_node_event_carries_its_journal_fields(captured: Capture) -> None:
    logs.emit(
        Log("rejected", logging.WARNING, "rejected: unknown_serial", "ABC123", State.REJECTED, 404)
    )
    (record,) = captured.records
    assert record.getMessage() == "node ABC123: rejected: unknown_serial"
    assert record.NODE_SN == "ABC123"  # type: ignore[attr-defined]
    assert record.NODE_STATE == "rejected"  # type: ignore[attr-defined]
    assert record.EXOSITE_STATUS == 404  # type: ignore[attr-defined]
    assert logs.MESSAGE_IDS["rejected"] == record.MESSAGE_ID  # type: ignore[attr-defined]


def test_fields_that_do_not_apply_are_left_out(captured: Capture) -> None:
    logs.emit(Log("invalid_request", logging.WARNING, "announce ignored: not JSON"))
    (record,) = captured.records
    assert not hasattr(record, "NODE_SN")
    assert not hasattr(record, "EXOSITE_STATUS")


def test_message_ids_are_fixed_and_distinct() -> None:
    ids = list(logs.MESSAGE_IDS.values())
    assert len(set(ids)) == len(ids)
    assert logs.MESSAGE_IDS["activated"] == uuid.UUID("a3f1836a85515ffda8922ada206d6ca4")


@pytest.mark.parametrize(
    ("environ", "handler"),
    [({"JOURNAL_STREAM": "8:1234"}, "JournalHandler"), ({}, "StreamHandler")],
)
def test_the_journal_under_systemd_else_stderr(
    environ: dict[str, str], handler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with root_logging_restored():
        logs.setup("info")
        assert [type(h).__name__ for h in logging.getLogger().handlers] == [handler]


def test_the_readme_lists_every_message_id() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for kind, message_id in logs.MESSAGE_IDS.items():
        assert f"| `{kind}` | `{message_id.hex}` |" in readme
