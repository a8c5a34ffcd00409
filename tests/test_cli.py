"""gatewayctl, in-process and as a subprocess, over a real state database and keyring."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.adapters.statedb import DB_NAME, SCHEMA_VERSION, StateDB
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret
from gatewayd.ctl.main import main

VENDOR = "acme"
MODEL = "thermo-v1"
CIK = "c1k0123456789abcdef0123456789abcdef01234"
HEADER = ["SN", "STATE", "MODEL", "ATTEMPTS", "REASON", "FIRST_SEEN", "ACTIVATED_AT"]

ACTIVATED = Node(
    sn="ABC123",
    vendor=VENDOR,
    model=MODEL,
    state=State.ACTIVATED,
    first_seen=1_700_000_000.0,
    attempts=1,
    activated_at=1_700_000_005.4,
)
REJECTED = Node(
    sn="abc123",
    vendor=VENDOR,
    model="hygro",
    state=State.REJECTED,
    first_seen=1_700_000_100.0,
    attempts=2,
    last_error="HTTP 404",
    reason=Reason.UNKNOWN_SERIAL,
    http_status=404,
    rejected_at=1_700_000_101.0,
)
PENDING = Node(
    sn="LONG-SERIAL-NUMBER-0001",
    vendor=VENDOR,
    model=MODEL,
    state=State.PENDING,
    first_seen=1_700_000_200.0,
    attempts=12,
    next_attempt=1_700_003_600.0,
    last_error="HTTP 503",
    http_status=503,
    expiry_warned=True,
)
NODES = (ACTIVATED, REJECTED, PENDING)


def write_config(folder: Path, state_dir: Path | None = None, extra: str = "") -> Path:
    path = folder / "config.toml"
    path.write_text(
        "[gateway]\n"
        'id = "gw1"\n'
        f'state_dir = "{state_dir or folder / "state"}"\n'
        "[exosite]\n"
        f'vendor = "{VENDOR}"\n'
        f'model = "{MODEL}"\n'
        'models = ["hygro"]\n' + extra
    )
    return path


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def filled(config: Path, state_dir: Path) -> Path:
    with StateDB.in_dir(state_dir) as db:
        for node in NODES:
            db.save(node)
    keystore = Keystore(FileKeyring(folder=state_dir / "keyring"), "gatewayd")
    keystore.store(VENDOR, MODEL, ACTIVATED.sn, Secret(CIK))
    return config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def utc(text: str) -> dt.datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() == dt.timedelta(0)
    return moment


# -------------------------------------------------------------- check-config


def test_check_config_accepts_a_valid_file(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    assert run(capsys, "check-config", "--config", str(config)) == (0, "ok\n", "")


def test_check_config_names_the_file_and_key_of_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, extra="[mqtt]\nport = 0\n")
    code, out, err = run(capsys, "--config", str(config), "check-config")
    assert code == 2
    assert out == ""
    assert err.startswith("gatewayctl: ")
    assert f"{config}: mqtt.port: " in err
    assert "got 0" in err


def test_check_config_reports_an_unknown_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, extra='[keyring]\nbackends = "x.Y"\n')
    code, out, err = run(capsys, "--config", str(config), "check-config")
    assert (code, out) == (2, "")
    assert f"{config}: keyring.backends: unknown key" in err


def test_a_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = run(capsys, "--config", str(missing), "check-config")
    assert (code, out) == (2, "")
    assert str(missing) in err
    assert "cannot read" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["show"],
        ["list", "--bogus"],
        ["check-config", "--json"],
        ["show", "A", "B"],
        ["--config"],
    ],
)
def test_bad_usage_exits_2(
    capsys: pytest.CaptureFixture[str], config: Path, argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: gatewayctl" in err


def test_config_is_accepted_before_and_after_the_subcommand(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, filled: Path
) -> None:
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    empty = write_config(elsewhere)
    before = run(capsys, "--config", str(filled), "list", "--json")
    after = run(capsys, "list", "--json", "--config", str(filled))
    assert before == after
    assert len(json.loads(before[1])) == len(NODES)
    assert run(capsys, "--config", str(filled), "list", "--json", "--config", str(empty)) == (
        0,
        "[]\n",
        "",
    )


# ---------------------------------------------------------------------- list


def test_list_without_a_database_prints_only_the_header(
    capsys: pytest.CaptureFixture[str], config: Path, state_dir: Path
) -> None:
    code, out, err = run(capsys, "--config", str(config), "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["  ".join(HEADER)]
    assert not state_dir.exists()
    assert run(capsys, "--config", str(config), "list", "--json") == (0, "[]\n", "")
    assert not state_dir.exists()


def columns(line: str, starts: list[int]) -> list[str]:
    ends = [*starts[1:], None]
    return [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]


def test_list_prints_an_aligned_table(capsys: pytest.CaptureFixture[str], filled: Path) -> None:
    code, out, err = run(capsys, "--config", str(filled), "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    assert header.split() == HEADER
    assert len(rows) == len(NODES)
    for row in rows:
        for start in starts[1:]:
            assert row[start - 2 : start] == "  ", row
            assert row[start] != " ", row
    assert [columns(row, starts) for row in rows] == [
        ["ABC123", "activated", MODEL, "1", "-", "2023-11-14T22:13:20Z", "2023-11-14T22:13:25Z"],
        ["abc123", "rejected", "hygro", "2", "unknown_serial", "2023-11-14T22:15:00Z", "-"],
        ["LONG-SERIAL-NUMBER-0001", "pending", MODEL, "12", "-", "2023-11-14T22:16:40Z", "-"],
    ]
    assert all(line == line.rstrip() for line in out.splitlines())


def test_list_json(capsys: pytest.CaptureFixture[str], filled: Path) -> None:
    code, out, err = run(capsys, "--config", str(filled), "list", "--json")
    assert (code, err) == (0, "")
    records = json.loads(out)
    assert [r["sn"] for r in records] == ["ABC123", "abc123", "LONG-SERIAL-NUMBER-0001"]
    first = records[0]
    assert first == {
        "sn": "ABC123",
        "vendor": VENDOR,
        "model": MODEL,
        "state": "activated",
        "first_seen": "2023-11-14T22:13:20Z",
        "attempts": 1,
        "next_attempt": None,
        "last_error": None,
        "reason": None,
        "http_status": None,
        "rejected_at": None,
        "activated_at": "2023-11-14T22:13:25Z",
        "expiry_warned": False,
        "request_started": None,
        "request_form": None,
        "uncertain": False,
    }
    assert records[1]["reason"] == "unknown_serial"
    assert records[1]["http_status"] == 404
    assert records[2]["expiry_warned"] is True
    for record, node in zip(records, NODES, strict=True):
        assert utc(record["first_seen"]).timestamp() == int(node.first_seen)
        for key in ("next_attempt", "rejected_at", "activated_at"):
            value = getattr(node, key)
            assert (record[key] is None) == (value is None)
            if value is not None:
                assert utc(record[key]).timestamp() == int(value)
    assert CIK not in out


# ---------------------------------------------------------------------- show


def test_show_prints_every_field(capsys: pytest.CaptureFixture[str], filled: Path) -> None:
    code, out, err = run(capsys, "--config", str(filled), "show", "abc123")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys == [
        "sn",
        "vendor",
        "model",
        "state",
        "first_seen",
        "attempts",
        "next_attempt",
        "last_error",
        "reason",
        "http_status",
        "rejected_at",
        "activated_at",
        "expiry_warned",
        "request_started",
        "request_form",
        "uncertain",
        "retired",
    ]
    values = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in lines}
    assert values["sn"] == "abc123"
    assert values["model"] == "hygro"
    assert values["last_error"] == "HTTP 404"
    assert values["rejected_at"] == "2023-11-14T22:15:01Z"
    assert values["activated_at"] == "-"
    assert values["retired"] == "0"
    assert len({len(line) - len(line.split(None, 1)[1]) for line in lines}) == 1


def test_show_json(capsys: pytest.CaptureFixture[str], filled: Path) -> None:
    code, out, err = run(
        capsys, "show", "LONG-SERIAL-NUMBER-0001", "--json", "--config", str(filled)
    )
    assert (code, err) == (0, "")
    record = json.loads(out)
    assert record["state"] == "pending"
    assert record["attempts"] == 12
    assert utc(record["next_attempt"]) == dt.datetime(2023, 11, 14, 23, 13, 20, tzinfo=dt.UTC)
    assert "cik" not in record


def test_show_matches_the_serial_exactly(capsys: pytest.CaptureFixture[str], filled: Path) -> None:
    upper = json.loads(run(capsys, "--config", str(filled), "show", "ABC123", "--json")[1])
    lower = json.loads(run(capsys, "--config", str(filled), "show", "abc123", "--json")[1])
    assert (upper["state"], lower["state"]) == ("activated", "rejected")


@pytest.mark.parametrize("sn", ["NOPE", "Abc123", "ABC12"])
def test_show_of_an_unknown_serial_exits_1(
    capsys: pytest.CaptureFixture[str], filled: Path, state_dir: Path, sn: str
) -> None:
    code, out, err = run(capsys, "--config", str(filled), "show", sn)
    assert (code, out) == (1, "")
    assert f"no node {sn!r}" in err
    assert str(state_dir) in err


def test_show_without_a_database_exits_1(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, "--config", str(config), "show", "ABC123")
    assert (code, out) == (1, "")
    assert "no node 'ABC123'" in err


def test_show_reveal_prints_the_stored_cik(
    capsys: pytest.CaptureFixture[str], filled: Path
) -> None:
    code, out, err = run(capsys, "--config", str(filled), "show", "ABC123", "--reveal")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].split() == ["cik", CIK]
    record = json.loads(
        run(capsys, "--config", str(filled), "show", "ABC123", "--reveal", "--json")[1]
    )
    assert record["cik"] == CIK


def test_show_reveal_of_a_node_without_a_cik(
    capsys: pytest.CaptureFixture[str], filled: Path
) -> None:
    code, out, err = run(capsys, "--config", str(filled), "show", "abc123", "--reveal", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["cik"] is None


RETIRED_CIKS = ("r" * 40, "s" * 40)


def test_show_says_when_and_why_each_cik_was_retired_never_which(
    capsys: pytest.CaptureFixture[str], filled: Path, state_dir: Path
) -> None:
    keystore = Keystore(FileKeyring(folder=state_dir / "keyring"), "gatewayd")
    retired = [
        Retired(Secret(RETIRED_CIKS[0]), 1_700_000_000.0, "refused by Exosite"),
        Retired(Secret(RETIRED_CIKS[1]), None, "not recorded"),
    ]
    assert keystore.add_retired(VENDOR, MODEL, ACTIVATED.sn, retired) == 2
    code, out, err = run(capsys, "--config", str(filled), "show", "ABC123")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("retired "))
    assert lines[at].split() == ["retired", "2"]
    indent = len(lines[at]) - 1
    assert lines[at + 1 :] == [
        " " * indent + "2023-11-14T22:13:20Z  refused by Exosite",
        " " * indent + "-  not recorded",
    ]
    code, out, err = run(capsys, "--config", str(filled), "show", "ABC123", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["retired"] == [
        {"at": "2023-11-14T22:13:20Z", "why": "refused by Exosite"},
        {"at": "-", "why": "not recorded"},
    ]
    argv = ("--config", str(filled), "show", "ABC123", "--reveal", "--json")
    revealed = json.loads(run(capsys, *argv)[1])
    assert [one["cik"] for one in revealed["retired"]] == list(RETIRED_CIKS)
    assert (
        json.loads(run(capsys, "--config", str(filled), "show", "abc123", "--json")[1])["retired"]
        == []
    )


def test_show_says_so_when_the_retired_ciks_cannot_be_read(
    capsys: pytest.CaptureFixture[str], filled: Path, state_dir: Path
) -> None:
    """Sealed with a key this gatewayctl is not given: the record is shown all the same."""
    sealed = Keystore(FileKeyring(folder=state_dir / "keyring", key=bytes(32)), "gatewayd")
    retired = [Retired(Secret(RETIRED_CIKS[0]), 1_700_000_000.0, "rotated")]
    sealed.add_retired(VENDOR, MODEL, ACTIVATED.sn, retired)
    code, out, err = run(capsys, "--config", str(filled), "show", "ABC123", "--json")
    assert code == 0
    assert json.loads(out)["retired"] is None
    assert err.startswith("gatewayctl: its retired CIKs cannot be read: cannot load the ")
    assert "encrypted and no keystore key was given" in err


def test_the_cik_is_nowhere_without_reveal(
    capsys: pytest.CaptureFixture[str], filled: Path
) -> None:
    outputs = [
        run(capsys, "--config", str(filled), *argv)
        for argv in (
            ["list"],
            ["list", "--json"],
            ["show", "ABC123"],
            ["show", "ABC123", "--json"],
            ["check-config"],
        )
    ]
    assert [code for code, _out, _err in outputs] == [0] * len(outputs)
    assert not [text for _code, out, err in outputs for text in (out, err) if CIK in text]
    keystore = Keystore(FileKeyring(folder=filled.parent / "state" / "keyring"), "gatewayd")
    assert keystore.retire(VENDOR, MODEL, ACTIVATED.sn)
    for argv in (["show", "ABC123"], ["show", "ABC123", "--json"]):
        code, out, err = run(capsys, "--config", str(filled), *argv)
        assert code == 0
        assert "refused by Exosite, or rotated away" in out
        assert CIK not in out + err


def test_a_newer_state_database_exits_1(
    capsys: pytest.CaptureFixture[str], config: Path, state_dir: Path
) -> None:
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    code, out, err = run(capsys, "--config", str(config), "list")
    assert (code, out) == (1, "")
    assert "upgrade gatewayd" in err


def test_an_unreachable_state_dir_exits_1_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, state_dir=tmp_path / ("x" * 300) / "state")
    code, out, err = run(capsys, "--config", str(config), "list")
    assert (code, out) == (1, "")
    assert err.startswith("gatewayctl: ")
    assert "Traceback" not in err


# ---------------------------------------------------------------- subprocess


def test_gatewayctl_runs_as_a_module(filled: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd.ctl.main",
            "--config",
            str(filled),
            "show",
            "ABC123",
            "--reveal",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0].split() == ["sn", "ABC123"]
    assert result.stdout.splitlines()[-1].split() == ["cik", CIK]
