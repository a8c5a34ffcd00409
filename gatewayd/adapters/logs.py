"""Logging set-up for the entry points, and the journal line of a node event.

Under systemd (``JOURNAL_STREAM`` or ``INVOCATION_ID`` set, and python-systemd
importable) records go to the journal with their fields; otherwise to stderr.
A node event carries ``NODE_SN``, ``NODE_STATE``, ``EXOSITE_STATUS`` and a
stable ``MESSAGE_ID`` per kind, so ``journalctl NODE_SN=...`` is a node's
history.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterable
from typing import Final

from gatewayd.adapters import redaction
from gatewayd.core.actions import Log

node_log = logging.getLogger("gatewayd.node")

MESSAGE_IDS: Final[dict[str, uuid.UUID]] = {
    kind: uuid.uuid5(uuid.NAMESPACE_URL, f"https://gatewayd/message/{kind}")
    for kind in (
        "announce",
        "activated",
        "republished",
        "rejected",
        "pending",
        "invalid_request",
        "expiry_warning",
        "cik_malformed",
        "cik_unreadable",
        "cik_unstored",
        "cik_stored_late",
        "needs_reenable",
        "operator",
        "forgotten",
        "unexpected",
        "cik_checked",
        "cik_refused",
        "cik_adopted",
        "rotated",
        "imported",
        "cik_no_verdict",
        "cik_not_adopted",
    )
}
"""One fixed 128-bit id per kind of node event (derived, so it never changes)."""

_STDERR_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup(level: str) -> None:
    """Attach the one handler of the process: the journal, or stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _journal_handler() or _stderr_handler()
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class RedactSecrets(logging.Filter):
    """Takes every secret this process knows out of a record: message, arguments, traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redaction.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            record.exc_text = redaction.redact(_FORMATTER.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redaction.redact(record.exc_text)
        return True


_FORMATTER: Final = logging.Formatter()


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def _journal_handler() -> logging.Handler | None:
    if not under_systemd():
        return None
    try:
        from systemd.journal import JournalHandler  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="gatewayd")
    return handler


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_STDERR_FORMAT))
    return handler


def about(sn: str) -> dict[str, object]:
    """The journal fields of a line about one node that is not an engine event:
    ``log.warning("node %s: ...", sn, extra=logs.about(sn))``."""
    return {"NODE_SN": sn}


def emit(event: Log) -> None:
    """Write a node event from the engine as one journal line with its fields."""
    if not node_log.isEnabledFor(event.level):
        return  # (a debug line per announce, in a storm: its fields are not even made)
    fields = _fields(event)
    if event.sn is not None:
        node_log.log(event.level, "node %s: %s", event.sn, event.message, extra=fields)
    else:
        node_log.log(event.level, "%s", event.message, extra=fields)


def to_journal(events: Iterable[Log], identifier: str) -> None:
    """Write node events straight to the journal, from a command run by hand (``gatewayctl
    import``), so that ``journalctl NODE_SN=...`` tells a node's whole history (where
    there is a journal)."""
    try:
        from systemd import journal  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return
    for event in events:
        fields = _fields(event)
        message_id = fields.pop("MESSAGE_ID")
        message = event.message if event.sn is None else f"node {event.sn}: {event.message}"
        try:
            journal.send(
                redaction.redact(message),
                message_id,
                PRIORITY=str(_PRIORITIES.get(event.level, 6)),
                SYSLOG_IDENTIFIER=identifier,
                **{key: str(value) for key, value in fields.items()},
            )
        except OSError:
            return  # no journal to write to


_PRIORITIES: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
"""syslog's priority of each logging level."""


def _fields(event: Log) -> dict[str, object]:
    fields: dict[str, object] = {
        "MESSAGE_ID": MESSAGE_IDS.get(event.kind, MESSAGE_IDS["unexpected"])
    }
    fields["GATEWAYD_EVENT"] = event.kind
    if event.sn is not None:
        fields["NODE_SN"] = event.sn
    if event.state is not None:
        fields["NODE_STATE"] = event.state.value
    if event.http_status is not None:
        fields["EXOSITE_STATUS"] = event.http_status
    fields.update(event.fields)
    return fields
