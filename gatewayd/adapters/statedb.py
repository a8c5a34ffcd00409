"""Node records in SQLite (WAL) under ``state_dir``. No secret is ever stored here.

The schema carries a version in ``PRAGMA user_version``; ``MIGRATIONS[n]``
takes a database from version ``n`` to ``n + 1``. A database newer than this
code is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, Final, Self

from gatewayd.core.errors import StateError
from gatewayd.core.model import Node, Reason, State

log = logging.getLogger(__name__)

DB_NAME: Final = "state.sqlite3"

MIGRATIONS: Final[tuple[str, ...]] = (
    # 0 -> 1
    """
    CREATE TABLE nodes (
        sn            TEXT PRIMARY KEY,   -- case-sensitive: BINARY collation
        vendor        TEXT NOT NULL,
        model         TEXT NOT NULL,
        state         TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        next_attempt  REAL,
        last_error    TEXT,
        reason        TEXT,
        http_status   INTEGER,
        first_seen    REAL NOT NULL,
        rejected_at   REAL,
        activated_at  REAL,
        expiry_warned INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    """,
    # 1 -> 2: the write-ahead of each request
    """
    ALTER TABLE nodes ADD COLUMN request_started REAL;
    ALTER TABLE nodes ADD COLUMN request_form TEXT;
    ALTER TABLE nodes ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Node))
_COLUMNS: Final = ", ".join(_FIELDS)
_INSERT: Final = (
    f"INSERT OR REPLACE INTO nodes ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})"  # noqa: S608 (fixed columns)
)
_STATES: Final[dict[object, State]] = {state.value: state for state in State}
_REASONS: Final[dict[object, Reason]] = {reason.value: reason for reason in Reason}


class StateDB:
    """The state database. Only the thread that opened it uses it."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Open (read-write: create and migrate) the database at ``path``.

        The schema version is checked before anything is written, and the
        connection is closed again whenever opening fails.
        """
        self.path = path
        try:
            if readonly:
                self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
            else:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {path}: {_why(exc)}") from exc
        try:
            self._check_version()
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StateError(f"cannot open the state database {path}: {exc}") from exc
        except StateError:
            self._db.close()
            raise

    @classmethod
    def in_dir(cls, state_dir: Path, *, readonly: bool = False) -> StateDB:
        return cls(state_dir / DB_NAME, readonly=readonly)

    def close(self) -> None:
        """Commit what is written (records saved since the last commit), then close: a
        transaction left open would be rolled back."""
        try:
            self.commit()
        except StateError as exc:
            log.warning("%s: the records written last are lost", exc)
        self._db.close()

    def check_writable(self) -> None:
        """Write the schema version again, durably: StateError if the database takes no
        writes (a read-only file, another user's file, a full disk)."""
        try:
            self._db.execute(f"PRAGMA user_version = {self._version():d}")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write to the state database {self.path}: {exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def _check_version(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} has schema version {version}; this gatewayd knows up to "
                f"{SCHEMA_VERSION}: upgrade gatewayd"
            )

    def _migrate(self) -> None:
        version = self._version()
        for target in range(version + 1, SCHEMA_VERSION + 1):
            log.info("migrating %s to schema version %d", self.path, target)
            with closing(self._db.cursor()) as cur:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[target - 1].split(";"):
                        if statement.strip():
                            cur.execute(statement)
                    cur.execute(f"PRAGMA user_version = {target:d}")
                except sqlite3.Error:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")

    def defer_sync(self) -> None:
        """From now on a commit does not wait for the disk (``synchronous=NORMAL``: the
        write-ahead log is synced only around checkpoints, which keeps the database
        whole through a power cut): the caller makes commits durable by flushing the
        file system (:class:`gatewayd.adapters.disk.Volumes`), one flush for many."""
        self._db.execute("PRAGMA synchronous=NORMAL")

    def save(self, node: Node) -> None:
        """Insert or replace a node's record: within the transaction :meth:`begin` opened,
        else committed at once."""
        row = _row(node)
        try:
            self._db.execute(_INSERT, row)
        except sqlite3.Error as exc:
            raise StateError(f"cannot save node {node.sn!r}: {exc}") from exc

    @property
    def writing(self) -> bool:
        """A transaction is open: saves or deletes wait for :meth:`commit`."""
        return self._db.in_transaction

    def begin(self) -> None:
        """Open a transaction, unless one is open: saves and deletes until :meth:`commit`
        are committed together."""
        if self._db.in_transaction:
            return
        try:
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write to {self.path}: {exc}") from exc

    def commit(self) -> None:
        """Commit the open transaction, if any; a failed commit is rolled back (every
        change since :meth:`begin` is lost) and raised as StateError."""
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(f"cannot write to {self.path}: {exc}") from exc

    def delete(self, sn: str) -> bool:
        try:
            cur = self._db.execute("DELETE FROM nodes WHERE sn = ?", (sn,))
        except sqlite3.Error as exc:
            raise StateError(f"cannot delete node {sn!r}: {exc}") from exc
        return cur.rowcount > 0

    def get(self, sn: str) -> Node | None:
        rows = self._select("WHERE sn = ?", (sn,))
        return next(rows, None)

    def all(self) -> list[Node]:
        """Every record, oldest first; rows are turned into nodes as they are read.

        The cyclic garbage collector is paused meanwhile: records hold no cycles,
        and with 10,000 of them it would run dozens of times for nothing. The pages
        read are let go of afterwards (the daemon reads every record once, at start:
        with 10,000 stored they would keep 0.6 MiB of cache).
        """
        query = f"SELECT {_COLUMNS} FROM nodes ORDER BY first_seen, sn"  # noqa: S608 (fixed)
        collecting = gc.isenabled()
        gc.disable()
        try:
            nodes = [_node(row) for row in self._db.execute(query)]
            self._db.execute("PRAGMA shrink_memory")
        except sqlite3.Error as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from exc
        finally:
            if collecting:
                gc.enable()
        return nodes

    def _select(self, clause: str, args: tuple[object, ...]) -> Iterator[Node]:
        try:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM nodes {clause}", args).fetchall()  # noqa: S608 (fixed clauses)
        except sqlite3.Error as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from exc
        for row in rows:
            yield _node(row)


def _why(exc: OSError | sqlite3.Error) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _row(node: Node) -> tuple[object, ...]:
    """A node as a row, in the order of ``_COLUMNS``: written out, as :func:`_node` is
    (it runs twice per activation)."""
    return (
        node.sn,
        node.vendor,
        node.model,
        node.state.value,
        node.first_seen,
        node.attempts,
        node.next_attempt,
        node.last_error,
        None if node.reason is None else node.reason.value,
        node.http_status,
        node.rejected_at,
        node.activated_at,
        int(node.expiry_warned),
        node.request_started,
        node.request_form,
        int(node.uncertain),
    )


def _node(row: tuple[Any, ...]) -> Node:
    """A row, in the order of Node's fields (``_COLUMNS``), as a Node.

    Written out field by field: it runs once per stored node before READY=1.
    Vendor and model are interned (the same few names on every row).
    """
    (sn, vendor, model, state, first_seen, attempts, next_attempt, last_error, reason,
     http_status, rejected_at, activated_at, expiry_warned, request_started, request_form,
     uncertain) = row  # fmt: skip
    return Node(
        sn,
        sys.intern(vendor),
        sys.intern(model),
        _STATES.get(state) or State(state),
        first_seen,
        attempts,
        next_attempt,
        last_error,
        None if reason is None else _REASONS.get(reason) or Reason(reason),
        http_status,
        rejected_at,
        activated_at,
        bool(expiry_warned),
        request_started,
        request_form,
        bool(uncertain),
    )
