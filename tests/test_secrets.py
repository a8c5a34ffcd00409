"""Secret hygiene: the log filter, core dumps, and who may see a CIK."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import leaked, root_logging_restored

from gatewayd.adapters import coredumps, logs, redaction
from gatewayd.core import protocol
from gatewayd.core.secret import Secret
from gatewayd.ctl import main as cli

CIK = "7c1e0d2b9a8f6e5d4c3b2a1f0e9d8c7b6a5f4e3d"


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The process's real handler (stderr, with its filter), written to a buffer."""
    for name in ("JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(name, raising=False)
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    with root_logging_restored():
        logs.setup("debug")
        yield out


def fail_with(value: str) -> None:
    raise ValueError(f"bad answer {value}")


def test_a_known_cik_or_token_never_reaches_the_log(journal: io.StringIO) -> None:
    redaction.remember_cik(Secret(CIK))
    redaction.remember(Secret("tok-vendor-31337"))
    log = logging.getLogger("gatewayd.test")
    log.info("body was %s", CIK)
    log.warning("token tok-vendor-31337 refused")
    try:
        fail_with(CIK)
    except ValueError:
        log.exception("failed")
    text = journal.getvalue()
    assert CIK not in text
    assert "tok-vendor-31337" not in text
    assert text.count("<secret>") == 3
    assert "ValueError: bad answer <secret>" in text


def test_only_remembered_values_are_redacted() -> None:
    other = secrets.token_hex(20)  # CIK-shaped, and new to this process
    assert redaction.redact(f"id {other}") == f"id {other}"
    Secret(other)  # wrapping remembers nothing: a CIK a node offers is not kept
    assert redaction.redact(f"id {other}") == f"id {other}"
    redaction.remember_cik(Secret(other))
    assert redaction.redact(f"id {other}!") == "id <secret>!"
    assert redaction.redact(f"x{other}0") == f"x{other}0"  # part of a longer hex run


def test_what_is_remembered_is_bounded_the_oldest_forgotten_first() -> None:
    book = redaction.Redactions(max_ciks=3, max_checked=2, max_others=2)
    ciks = [Secret(secrets.token_hex(20)) for _ in range(4)]
    for cik in ciks:
        book.remember_cik(cik)
    book.remember_cik(ciks[1])  # seen again: the most recent now
    book.remember_cik(Secret(secrets.token_hex(20)))
    assert [book.redact(c.reveal()) == "<secret>" for c in ciks] == [False, True, False, True]
    for token in ("token-one", "token-two", "token-three"):
        book.remember(token)
    assert book.redact("token-one token-two token-three") == "token-one <secret> <secret>"
    assert len(book) == 5


def test_junk_checked_pushes_out_no_cik_of_gatewayds_own_nor_a_token() -> None:
    """A token may have a CIK's shape (40 hex digits): it is kept with the tokens, and the
    CIKs nodes offer, once checked, are kept apart from gatewayd's own."""
    book = redaction.Redactions(max_ciks=3, max_checked=2, max_others=2)
    token, own = secrets.token_hex(20), Secret(secrets.token_hex(20))
    book.remember(token)
    book.remember_cik(own)
    for _ in range(100):
        book.remember_cik(Secret(secrets.token_hex(20)), checked=True)
    assert book.redact(f"{token} {own.reveal()}") == "<secret> <secret>"


def test_a_cik_of_other_visible_characters_is_redacted_too() -> None:
    book = redaction.Redactions()
    cik = "Zq9-" * 10
    book.remember_cik(Secret(cik))
    assert book.redact(f"answer was {cik}.") == "answer was <secret>."
    book.remember_cik(Secret("short"))  # no CIK: nothing kept
    assert len(book) == 1


def test_a_cik_a_node_offers_is_not_remembered_unless_checked() -> None:
    topics = protocol.Topics("gatewayd", "gw1")
    before = len(redaction.REDACTIONS)
    for _ in range(100):
        payload = f'{{"cik": "{secrets.token_hex(20)}"}}'.encode()
        announced = protocol.parse_announce(topics, "SN1", payload, re.compile(r".+"))
        assert announced.cik is not None
    assert len(redaction.REDACTIONS) == before


def test_core_dumps_are_turned_off() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        import ctypes  # noqa: PLC0415

        ok = coredumps.no_core_dumps()
        dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
        os.write(write, f"{ok} {dumpable}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    assert said == "True 0"


def as_nobody(run: Callable[[], int]) -> tuple[int, str]:
    """Run ``run`` in a child process as uid 65534; its exit status and stderr."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 99
        err = io.StringIO()
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with contextlib.redirect_stderr(err):
                code = run()
        finally:
            os.write(write, f"{code}\n{err.getvalue()}".encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        code_text, _, err_text = pipe.read().partition("\n")
    os.waitpid(pid, 0)
    return int(code_text), err_text


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (["show", "SN1", "--reveal"], "show --reveal"),
        (["reenable", "SN1"], "reenable"),
        (["sn-status", "SN1"], "sn-status"),
    ],
)
def test_seeing_a_cik_or_using_the_token_is_for_root_and_gatewayd(
    tmp_path: Path, argv: list[str], what: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to become another user")
    config = tmp_path / "config.toml"
    config.write_text('[exosite]\nvendor = "acme"\nmodel = "m"\n')
    code, err = as_nobody(lambda: cli.main(["--config", str(config), *argv]))
    assert code == 1
    assert err == f"gatewayctl: {what} is for root and the gatewayd user\n"


def test_the_log_sweep_finds_a_secret_in_a_log() -> None:
    # outside pytest's folders, which the sweep itself searches at the end
    with tempfile.TemporaryDirectory() as folder:
        clean, dirty = Path(folder, "gatewayd.log"), Path(folder, "mosquitto.log")
        clean.write_text("node SN1: credentials activated\n")
        dirty.write_text(f"PUBLISH {{'cik': '{CIK}'}}\n")
        found = leaked([clean, dirty], frozenset({CIK, "tok-1234567"}))
    assert found == [("mosquitto.log", Path(folder).name)]
