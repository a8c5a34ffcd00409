"""Journal fields of node events, and the choice between the journal and stderr."""

from __future__ import annotations

import ast
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import root_logging_restored

from gatewayd.adapters import logs
from gatewayd.core.actions import Log
from gatewayd.core.model import State


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
    if handler == "JournalHandler":
        pytest.importorskip("systemd.journal", reason="needs python-systemd")
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


LEVELS = frozenset({"debug", "info", "warning", "error", "critical", "exception"})


def test_every_line_about_a_node_carries_its_field() -> None:
    """A log call whose message names a node ("node %s", "serial %s") passes its NODE_SN
    (``extra=logs.about(sn)``), so that ``journalctl NODE_SN=`` is the node's whole history."""
    offenders = []
    package = Path(__file__).resolve().parent.parent / "gatewayd"
    for path in sorted(package.rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            first = call.args[0] if call.args else None
            names_a_node = (
                call.func.attr in LEVELS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and re.search(r"\b(node|serial) %s", first.value) is not None
            )
            if names_a_node and not any(k.arg == "extra" for k in call.keywords):
                offenders.append(f"{path.relative_to(package.parent)}:{call.lineno}")
    assert offenders == []
