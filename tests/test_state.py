"""The state database: real SQLite files in a temporary state directory."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayd.adapters.statedb import DB_NAME, MIGRATIONS, SCHEMA_VERSION, StateDB
from gatewayd.core.errors import StateError
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.secret import Secret

NODE = Node(
    sn="ABC123",
    vendor="acme",
    model="thermo-v1",
    state=State.PENDING,
    first_seen=1_700_000_000.25,
    attempts=3,
    next_attempt=1_700_000_030.5,
    last_error="HTTP 503",
    reason=None,
    http_status=503,
)

EVERY_FIELD = Node(
    sn="Sn-1.x:y_z",
    vendor="acme",
    model="hygro",
    state=State.REJECTED,
    first_seen=1_700_000_000.125,
    attempts=7,
    next_attempt=1_700_000_100.0,
    last_error="Exosite refused: 404 unknown serial \u2014 \u00e9",
    reason=Reason.UNKNOWN_SERIAL,
    http_status=404,
    rejected_at=1_700_000_050.0,
    activated_at=1_700_000_060.75,
    expiry_warned=True,
    request_started=1_700_000_040.5,
    request_form="murano",
    uncertain=True,
)


def open_db(state_dir: Path, *, readonly: bool = False) -> StateDB:
    return StateDB.in_dir(state_dir, readonly=readonly)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def pragma(path: Path, name: str) -> object:
    db = raw(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def test_every_field_survives_a_round_trip(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.save(EVERY_FIELD)
    with open_db(tmp_path) as db:
        assert db.get(EVERY_FIELD.sn) == EVERY_FIELD
        assert db.all() == [EVERY_FIELD]


def test_the_round_trip_keeps_types(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.save(EVERY_FIELD)
        node = db.get(EVERY_FIELD.sn)
    assert node is not None
    assert type(node.state) is State
    assert type(node.reason) is Reason
    assert type(node.expiry_warned) is bool
    assert type(node.attempts) is int
    assert type(node.first_seen) is float


times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
text = st.text(max_size=40)
nodes = st.builds(
    Node,
    sn=st.text(min_size=1, max_size=64),
    vendor=st.text(min_size=1, max_size=20),
    model=st.text(min_size=1, max_size=20),
    state=st.sampled_from(State),
    first_seen=times,
    attempts=st.integers(min_value=0, max_value=2**63 - 1),
    next_attempt=st.none() | times,
    last_error=st.none() | text,
    reason=st.none() | st.sampled_from(Reason),
    http_status=st.none() | st.integers(min_value=100, max_value=599),
    rejected_at=st.none() | times,
    activated_at=st.none() | times,
    expiry_warned=st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=nodes)
def test_any_node_survives_a_round_trip(node: Node) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with open_db(Path(folder)) as db:
            db.save(node)
        with open_db(Path(folder), readonly=True) as db:
            assert db.get(node.sn) == node
            assert db.all() == [node]


def test_save_replaces_the_record(tmp_path: Path) -> None:
    activated = dataclasses.replace(NODE, state=State.ACTIVATED, activated_at=1_700_000_031.0)
    with open_db(tmp_path) as db:
        db.save(NODE)
        db.save(activated)
        assert db.all() == [activated]


def test_serials_that_differ_in_case_are_two_rows(tmp_path: Path) -> None:
    upper = NODE
    lower = dataclasses.replace(NODE, sn="abc123", attempts=0, first_seen=NODE.first_seen + 1)
    with open_db(tmp_path) as db:
        db.save(upper)
        db.save(lower)
        assert db.all() == [upper, lower]
        assert db.get("ABC123") == upper
        assert db.get("abc123") == lower
        assert db.get("Abc123") is None


def test_all_is_ordered_by_first_seen_then_serial(tmp_path: Path) -> None:
    late = dataclasses.replace(NODE, sn="A", first_seen=20.0)
    early_b = dataclasses.replace(NODE, sn="B", first_seen=10.0)
    early_a = dataclasses.replace(NODE, sn="a", first_seen=10.0)
    with open_db(tmp_path) as db:
        for node in (late, early_a, early_b):
            db.save(node)
        assert [n.sn for n in db.all()] == ["B", "a", "A"]


def test_get_of_an_unknown_serial_is_none(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        assert db.get("NOPE") is None
        assert db.all() == []


def test_delete(tmp_path: Path) -> None:
    other = dataclasses.replace(NODE, sn="OTHER")
    with open_db(tmp_path) as db:
        db.save(NODE)
        db.save(other)
        assert db.delete("ABC123") is True
        assert db.delete("ABC123") is False
        assert db.delete("abc123") is False
    with open_db(tmp_path) as db:
        assert db.all() == [other]


def test_a_saved_record_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    with open_db(tmp_path) as writer, open_db(tmp_path, readonly=True) as reader:
        writer.save(NODE)
        assert reader.get("ABC123") == NODE


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        assert db._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db._db.execute("PRAGMA synchronous").fetchone() == (2,)
    assert pragma(tmp_path / DB_NAME, "journal_mode") == "wal"


def test_user_version_is_the_schema_version(tmp_path: Path) -> None:
    with open_db(tmp_path):
        pass
    assert SCHEMA_VERSION >= 1
    assert pragma(tmp_path / DB_NAME, "user_version") == SCHEMA_VERSION


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.save(NODE)
    with open_db(tmp_path) as db:
        assert db.all() == [NODE]
    assert pragma(tmp_path / DB_NAME, "user_version") == SCHEMA_VERSION


@pytest.mark.parametrize("readonly", [False, True])
def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / DB_NAME
    newer = SCHEMA_VERSION + 1
    db = raw(path)
    db.execute("CREATE TABLE future (x)")
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match=rf"schema version {newer}.*upgrade gatewayd") as info:
        StateDB(path, readonly=readonly)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert pragma(path, "journal_mode") == "delete"


@pytest.mark.parametrize("readonly", [False, True])
def test_a_corrupt_file_is_a_state_error(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(b"this is not an SQLite database, just some bytes\n" * 100)
    with pytest.raises(StateError, match="cannot open the state database") as info:
        StateDB(path, readonly=readonly)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_a_state_dir_that_cannot_be_made_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot open the state database"):
        StateDB.in_dir(blocker / "state")


def test_readonly_cannot_write(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        db.save(NODE)
    with open_db(tmp_path, readonly=True) as db:
        with pytest.raises(StateError, match="cannot save node 'OTHER'"):
            db.save(dataclasses.replace(NODE, sn="OTHER"))
        with pytest.raises(StateError, match="cannot delete node 'ABC123'"):
            db.delete("ABC123")
        assert db.all() == [NODE]


def test_readonly_does_not_create_a_database(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        open_db(tmp_path / "state", readonly=True)
    assert not (tmp_path / "state" / DB_NAME).exists()


def test_the_database_lives_inside_the_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "var" / "lib" / "gatewayd"
    with open_db(state_dir) as db:
        db.save(NODE)
        assert db.path == state_dir / DB_NAME
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert {p.parent for p in files} == {state_dir}
        assert {p.name for p in files} >= {DB_NAME, f"{DB_NAME}-wal"}
        assert all(p.name.startswith(DB_NAME) for p in files)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_a_node_has_no_field_for_a_secret() -> None:
    fields = dataclasses.fields(Node)
    secretish = ("cik", "key", "secret", "token", "password")
    assert not [f.name for f in fields if any(word in f.name.lower() for word in secretish)]
    assert not [f.name for f in fields if "Secret" in str(f.type)]
    with pytest.raises(TypeError):
        Node(**dataclasses.asdict(NODE), cik=Secret("f" * 40))  # type: ignore[call-arg]


def test_the_table_holds_exactly_the_node_fields(tmp_path: Path) -> None:
    with open_db(tmp_path) as state:
        state.save(EVERY_FIELD)
    db = raw(tmp_path / DB_NAME)
    try:
        tables = [
            row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        ]
        columns = [row[1] for row in db.execute("PRAGMA table_info(nodes)")]
        (row,) = db.execute("SELECT * FROM nodes").fetchall()
    finally:
        db.close()
    assert tables == ["nodes"]
    assert sorted(columns) == sorted(f.name for f in dataclasses.fields(Node))
    assert not [v for v in row if isinstance(v, str) and len(v) == 40 and " " not in v]


def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    """Schema 1 had no write-ahead columns: its rows load with their defaults."""
    path = tmp_path / DB_NAME
    db = raw(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO nodes (sn, vendor, model, state, first_seen) VALUES (?, ?, ?, ?, ?)",
        ("OLD1", "acme", "thermo-v1", "activating", 1_700_000_000.0),
    )
    db.close()
    with open_db(tmp_path) as migrated:
        (node,) = migrated.all()
    assert pragma(path, "user_version") == SCHEMA_VERSION == 2
    assert node == Node("OLD1", "acme", "thermo-v1", State.ACTIVATING, 1_700_000_000.0)
    assert (node.request_started, node.request_form, node.uncertain) == (None, None, False)


SAVES = 20


def flushes_during_saves(folder: Path, *, deferred: bool, together: bool = False) -> list[str]:
    """The fsync, fdatasync and syncfs calls a process makes while saving SAVES records
    (in one transaction if ``together``; with commits left to a flush of the volume,
    then that flush, if ``deferred``)."""
    script = "\n".join(
        [
            "import sys",
            "from pathlib import Path",
            "from gatewayd.core.model import Node, State",
            "from gatewayd.adapters.disk import Volumes",
            "from gatewayd.adapters.statedb import StateDB",
            f"folder = Path({str(folder)!r})",
            "db = StateDB.in_dir(folder)",
            "volumes = Volumes([folder])",
            "db.save(Node('WARM', 'v', 'm', State.ACTIVATING, 1.0))",
            *(["db.defer_sync()"] if deferred else []),
            "sys.stdout.write('saving\\n'); sys.stdout.flush()",
            *(["db.begin()"] if together else []),
            f"for i in range({SAVES}):",
            "    db.save(Node(f'SN{i}', 'v', 'm', State.ACTIVATING, 1.0))",
            "db.commit()",
            *(["volumes.sync()"] if deferred else []),
            "sys.stdout.write('saved\\n'); sys.stdout.flush()",
        ]
    )
    trace = folder / "strace.txt"
    strace = ["strace", "-f", "-e", "trace=fsync,fdatasync,syncfs,write", "-o", str(trace)]
    subprocess.run(
        [*strace, sys.executable, "-c", script],
        check=True,
        capture_output=True,
        timeout=60,
    )
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if '"saving\\n"' in line)
    end = next(i for i, line in enumerate(lines) if '"saved\\n"' in line)
    calls = ("fsync(", "fdatasync(", "syncfs(")
    return [line.split(None, 1)[1] for line in lines[start:end] if any(c in line for c in calls)]


def test_each_save_waits_for_the_disk_by_default(tmp_path: Path) -> None:
    assert len(flushes_during_saves(tmp_path, deferred=False)) >= SAVES


def test_saves_in_one_transaction_wait_for_the_disk_once(tmp_path: Path) -> None:
    assert 1 <= len(flushes_during_saves(tmp_path, deferred=False, together=True)) <= 2


def test_deferred_commits_are_made_durable_by_one_flush_of_the_volume(tmp_path: Path) -> None:
    (tmp_path / "apart").mkdir()
    (tmp_path / "together").mkdir()
    for folder, together in ((tmp_path / "apart", False), (tmp_path / "together", True)):
        calls = flushes_during_saves(folder, deferred=True, together=together)
        assert len(calls) == 1, calls
        assert calls[0].startswith("syncfs("), calls


def test_a_transaction_is_seen_whole_or_not_at_all(tmp_path: Path) -> None:
    with open_db(tmp_path) as db, open_db(tmp_path) as reader:
        db.defer_sync()
        db.begin()
        db.save(NODE)
        db.begin()  # one is open: nothing changes
        db.save(dataclasses.replace(NODE, sn="SN-2"))
        assert reader.get(NODE.sn) is None
        db.commit()
        assert reader.get(NODE.sn) == NODE
        assert reader.get("SN-2") is not None
        db.commit()  # none is open: nothing to do
        db.save(dataclasses.replace(NODE, sn="SN-3"))  # no transaction is left open
        assert reader.get("SN-3") is not None
        assert db._db.execute("PRAGMA synchronous").fetchone() == (1,)


def test_close_keeps_what_an_open_transaction_wrote(tmp_path: Path) -> None:
    """The daemon's last records (activated ones, saved after their CIK's flush) may still
    be in the transaction when it stops."""
    with open_db(tmp_path) as db:
        db.defer_sync()
        db.begin()
        db.save(NODE)
    with open_db(tmp_path, readonly=True) as reader:
        assert reader.get(NODE.sn) == NODE
