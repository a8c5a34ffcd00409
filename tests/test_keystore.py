"""The keystore against real files: keyring's contract, modes, encryption, durability."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import InitError, KeyringError, PasswordDeleteError, PasswordSetError
from keyring.testing.backend import BackendBasicTests

from gatewayd.adapters.filestore import FileStore
from gatewayd.adapters.keystore import KEY_CREDENTIAL, FileKeyring, Keystore, load_key, open_backend
from gatewayd.core.errors import KeystoreError
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret

VENDOR = "acme"
MODEL = "thermo-v1"
WRITER = Path(__file__).with_name("keystore_writer.py")
TIMEOUT = 30.0


def new_cik() -> Secret:
    return Secret(secrets.token_urlsafe(30)[:40])


def entry_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if not path.name.startswith(".")]


class _ContractTests(BackendBasicTests):
    key: bytes | None = None

    def init_keyring(self) -> FileKeyring:
        self.temp = Path(tempfile.mkdtemp(prefix="gatewayd-keyring-test-"))
        return FileKeyring(folder=self.temp / "keyring", key=self.key)

    def cleanup(self) -> None:
        try:
            super().cleanup()  # type: ignore[no-untyped-call, unused-ignore]
        finally:
            shutil.rmtree(self.temp)


class TestFileKeyringContract(_ContractTests):
    pass


class TestEncryptedFileKeyringContract(_ContractTests):
    key = bytes(range(32))


class _Unusable:
    def __get__(self, obj: object, owner: type | None = None) -> float:
        raise RuntimeError("this backend needs a D-Bus session")


class UnusableBackend(KeyringBackend):
    priority = _Unusable()

    def get_password(self, _service: str, _username: str) -> str | None:
        return None

    def set_password(self, _service: str, _username: str, _password: str) -> None:
        raise PasswordSetError("unusable")


class LeakyBackend(KeyringBackend):
    """Fails every call, quoting the password in its messages as a careless backend might."""

    priority = -1

    def get_password(self, _service: str, _username: str) -> str | None:
        raise KeyringError("the collection is locked")

    def set_password(self, _service: str, _username: str, password: str) -> None:
        raise PasswordSetError(f"refused to store {password!r}")

    def delete_password(self, _service: str, _username: str) -> None:
        raise PasswordDeleteError("refused to delete")


def test_serials_differing_only_in_case_keep_separate_ciks(tmp_path: Path) -> None:
    keystore = Keystore(FileKeyring(folder=tmp_path / "keyring"))
    lower, upper = new_cik(), new_cik()
    keystore.store(VENDOR, MODEL, "abc123", lower)
    keystore.store(VENDOR, MODEL, "ABC123", upper)
    assert keystore.load(VENDOR, MODEL, "abc123") == lower
    assert keystore.load(VENDOR, MODEL, "ABC123") == upper
    assert keystore.delete(VENDOR, MODEL, "abc123") is True
    assert keystore.load(VENDOR, MODEL, "abc123") is None
    assert keystore.load(VENDOR, MODEL, "ABC123") == upper


def test_keystore_round_trip_names_the_service_and_logs_no_cik(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = FileKeyring(folder=tmp_path / "keyring")
    keystore = Keystore(backend, service_prefix="gw")
    cik = new_cik()
    assert keystore.service(VENDOR, MODEL) == "gw/acme/thermo-v1"
    assert keystore.load(VENDOR, MODEL, "SN-1") is None
    keystore.store(VENDOR, MODEL, "SN-1", cik)
    assert backend.get_password("gw/acme/thermo-v1", "SN-1") == cik.reveal()
    assert keystore.load(VENDOR, MODEL, "SN-1") == cik
    assert keystore.load(VENDOR, "other-model", "SN-1") is None
    assert keystore.delete(VENDOR, MODEL, "SN-1") is True
    assert keystore.delete(VENDOR, MODEL, "SN-1") is False
    assert caplog.records
    assert all(cik.reveal() not in record.getMessage() for record in caplog.records)


def test_entry_is_0600_in_a_new_0700_folder(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "lib" / "keyring"
    FileKeyring(folder=folder).set_password("svc", "user", "pw")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [entry] = entry_files(folder)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert list(folder.iterdir()) == [entry]


def test_wider_existing_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "keyring"
    folder.mkdir()
    folder.chmod(0o755)
    FileKeyring(folder=folder).set_password("svc", "user", "pw")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_stale_temp_file_from_a_crash_is_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "keyring"
    backend = FileKeyring(folder=folder)
    backend.set_password("svc", "user", "first")
    [entry] = entry_files(folder)
    stale = folder / f".{entry.name}.0123456789abcdef.tmp"
    stale.write_bytes(b"half a wri")
    assert backend.get_password("svc", "user") == "first"
    backend.set_password("svc", "user", "second")
    assert backend.get_password("svc", "user") == "second"
    assert entry_files(folder) == [entry]


def test_encrypted_entry_holds_neither_cik_nor_serial(tmp_path: Path) -> None:
    cik = new_cik()
    for key, folder in ((None, tmp_path / "plain"), (os.urandom(32), tmp_path / "sealed")):
        Keystore(FileKeyring(folder=folder, key=key)).store(VENDOR, MODEL, "SN-SECRETLESS", cik)
    [plain] = entry_files(tmp_path / "plain")
    [sealed] = entry_files(tmp_path / "sealed")
    assert cik.reveal().encode() in plain.read_bytes()
    assert cik.reveal().encode() not in sealed.read_bytes()
    assert b"SN-SECRETLESS" not in sealed.read_bytes()
    assert plain.read_bytes()[:6] != sealed.read_bytes()[:6]


@pytest.mark.parametrize("reader_key", [None, bytes(32)], ids=["no-key", "wrong-key"])
def test_encrypted_entry_without_the_right_key_is_a_clear_error(
    tmp_path: Path, reader_key: bytes | None
) -> None:
    folder = tmp_path / "keyring"
    cik = new_cik()
    Keystore(FileKeyring(folder=folder, key=os.urandom(32))).store(VENDOR, MODEL, "SN-1", cik)
    reader = FileKeyring(folder=folder, key=reader_key)
    with pytest.raises(KeyringError, match=r"encrypted|decrypted") as raised:
        reader.get_password("gatewayd/acme/thermo-v1", "SN-1")
    assert cik.reveal() not in str(raised.value)
    with pytest.raises(KeystoreError, match="SN-1") as mapped:
        Keystore(reader).load(VENDOR, MODEL, "SN-1")
    assert cik.reveal() not in str(mapped.value)


@pytest.mark.parametrize("key", [None, bytes(range(32))], ids=["plain", "encrypted"])
def test_entry_copied_to_another_name_is_refused(tmp_path: Path, key: bytes | None) -> None:
    folder = tmp_path / "keyring"
    backend = FileKeyring(folder=folder, key=key)
    backend.set_password("svc", "alice", "alice-pw")
    [alice] = entry_files(folder)
    backend.set_password("svc", "bob", "bob-pw")
    [bob] = [path for path in entry_files(folder) if path != alice]
    shutil.copyfile(alice, bob)
    with pytest.raises(KeyringError, match=r"another service|decrypted"):
        backend.get_password("svc", "bob")


def test_altered_or_foreign_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keyring"
    backend = FileKeyring(folder=folder, key=os.urandom(32))
    backend.set_password("svc", "user", "pw")
    [entry] = entry_files(folder)
    blob = bytearray(entry.read_bytes())
    blob[-1] ^= 1
    entry.write_bytes(bytes(blob))
    with pytest.raises(KeyringError, match="decrypted"):
        backend.get_password("svc", "user")
    entry.write_bytes(b'{"service": "svc", "username": "user", "password": "pw"}')
    with pytest.raises(KeyringError, match="not a gatewayd keyring entry"):
        backend.get_password("svc", "user")


def test_plain_entry_stays_readable_once_a_key_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "keyring"
    FileKeyring(folder=folder).set_password("svc", "user", "written-before-the-key")
    with caplog.at_level(logging.WARNING):
        value = FileKeyring(folder=folder, key=os.urandom(32)).get_password("svc", "user")
    assert value == "written-before-the-key"
    assert "unencrypted" in caplog.text


def test_key_of_the_wrong_size_is_refused_and_no_repr_shows_a_key(tmp_path: Path) -> None:
    with pytest.raises(InitError, match="32 bytes"):
        FileKeyring(folder=tmp_path, key=bytes(16))
    key = bytes(range(65, 97))
    backend = FileKeyring(folder=tmp_path, key=key)
    for text in (repr(backend), str(backend), repr(vars(backend))):
        assert key.hex() not in text
        assert key.decode() not in text
    assert "encrypted=True" in repr(backend)


KEY = bytes(range(32))


@pytest.mark.parametrize(
    "content",
    [
        KEY,
        b" " + KEY[1:],
        KEY.hex().encode() + b"\n",
        b"  " + KEY.hex().upper().encode() + b"\r\n",
        b"\n" + base64.b64encode(KEY) + b"\n",
    ],
    ids=["raw", "raw-with-edge-whitespace", "hex", "upper-hex", "base64"],
)
def test_load_key_accepts_raw_hex_and_base64(tmp_path: Path, content: bytes) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(content)
    expected = content if len(content) == 32 else KEY
    assert load_key(key_file, None) == expected


@pytest.mark.parametrize(
    "content",
    [
        b"",
        KEY[:31],
        KEY.hex().encode()[:63],
        b"g" * 64,
        base64.b64encode(KEY[:16]),
        base64.b64encode(KEY + b"x"),
        b"correct horse battery staple",
    ],
    ids=["empty", "raw-31", "hex-63", "not-hex-64", "base64-16", "base64-33", "passphrase"],
)
def test_load_key_rejects_anything_else(tmp_path: Path, content: bytes) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(content)
    with pytest.raises(KeystoreError, match="32 raw bytes, 64 hex characters") as raised:
        load_key(key_file, None)
    message = str(raised.value)
    assert str(key_file) in message
    if len(content) > 3:
        assert content.decode("latin-1") not in message


def test_load_key_reads_the_systemd_credential(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    assert load_key(None, str(credentials)) is None
    (credentials / KEY_CREDENTIAL).write_text(base64.b64encode(KEY).decode() + "\n")
    assert load_key(None, str(credentials)) == KEY
    key_file = tmp_path / "key"
    other = os.urandom(32)
    key_file.write_bytes(other)
    assert load_key(key_file, str(credentials)) == other
    assert load_key(None, None) is None


def test_load_key_names_a_missing_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    with pytest.raises(KeystoreError, match=str(missing)):
        load_key(missing, None)


def test_cik_survives_sigkill_right_after_store(tmp_path: Path) -> None:
    folder = tmp_path / "keyring"
    key = os.urandom(32)
    cik = new_cik()
    request = {"folder": str(folder), "key": key.hex(), "vendor": VENDOR, "model": MODEL}
    request |= {"sn": "SN-DURABLE", "cik": cik.reveal()}
    errors = tmp_path / "writer.stderr"
    with (
        errors.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, str(WRITER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as proc,
    ):
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
            assert ready, f"the writer said nothing within {TIMEOUT} s"
            line = proc.stdout.readline()
            assert line == "stored\n", errors.read_text()
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
    keystore = Keystore(FileKeyring(folder=folder, key=key))
    assert keystore.load(VENDOR, MODEL, "SN-DURABLE") == cik


@pytest.mark.parametrize(
    "name", ["gatewayd.adapters.keystore.FileKeyring", "gatewayd.keystore.FileKeyring"]
)
def test_open_backend_builds_the_file_store_with_folder_and_key(tmp_path: Path, name: str) -> None:
    """Also under its name in gatewayd 0.1.0, which configuration files may still give."""
    folder = tmp_path / "keyring"
    key = os.urandom(32)
    backend = open_backend(name, folder, key)
    assert isinstance(backend, FileStore)
    assert backend.folder == folder
    assert backend.encrypted
    backend.set_password("svc", "user", "pw")
    assert FileKeyring(folder=folder, key=key).get_password("svc", "user") == "pw"


def test_the_default_backend_works_without_loading_keyring(tmp_path: Path) -> None:
    """The daemon's own store needs neither the keyring library nor, without a key,
    cryptography: each costs a small gateway start-up time and memory."""
    script = (
        "import sys; from pathlib import Path;"
        "from gatewayd.adapters.keystore import Keystore, open_backend;"
        "from gatewayd.core.secret import Secret;"
        "backend = open_backend("
        f"'gatewayd.adapters.keystore.FileKeyring', Path({str(tmp_path)!r}), None);"
        "store = Keystore(backend);"
        "store.store('acme', 'm', 'SN1', Secret('c' * 40));"
        "assert store.load('acme', 'm', 'SN1') == Secret('c' * 40);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'keyring', 'cryptography'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_a_sealed_store_loads_cryptography_with_its_first_cik_not_at_start(
    tmp_path: Path,
) -> None:
    """Opened with a key and probed, as the daemon starts, the store has not loaded
    cryptography (an idle gateway has no use for it); sealing the first CIK loads it."""
    script = (
        "import os, sys; from pathlib import Path;"
        "from gatewayd.adapters.keystore import Keystore, open_backend;"
        "from gatewayd.core.secret import Secret;"
        "loaded = lambda: any(m.split('.')[0] == 'cryptography' for m in sys.modules);"
        "backend = open_backend("
        f"'gatewayd.adapters.keystore.FileKeyring', Path({str(tmp_path)!r}), os.urandom(32));"
        "store = Keystore(backend); store.probe(); print(loaded());"
        "store.store('acme', 'm', 'SN1', Secret('c' * 40)); print(loaded());"
        "assert store.load('acme', 'm', 'SN1') == Secret('c' * 40)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "True"]
    (entry,) = tmp_path.iterdir()
    assert entry.read_bytes().startswith(b"GWKR\x01E")


@pytest.mark.parametrize(("key", "loads"), [(os.urandom(32), "True"), (None, "False")])
def test_prepare_loads_cryptography_for_a_sealed_store_only(
    tmp_path: Path, key: bytes | None, loads: str
) -> None:
    script = (
        "import sys; from pathlib import Path;"
        "from gatewayd.adapters.keystore import Keystore, open_backend;"
        "backend = open_backend("
        f"'gatewayd.adapters.keystore.FileKeyring', Path({str(tmp_path)!r}), {key!r});"
        "Keystore(backend).prepare();"
        "print(any(m.split('.')[0] == 'cryptography' for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == loads


def test_a_key_without_cryptography_installed_is_refused_when_the_store_opens(
    tmp_path: Path,
) -> None:
    """Without site-packages (``-S``) cryptography cannot be imported: the store, which
    loads it only with the first CIK, says so at start instead."""
    script = (
        "import os; from pathlib import Path;"
        "from gatewayd.adapters.keystore import open_backend;"
        "from gatewayd.core.errors import KeystoreError\n"
        "try:\n"
        "    open_backend("
        f"'gatewayd.adapters.keystore.FileKeyring', Path({str(tmp_path)!r}), os.urandom(32))\n"
        "except KeystoreError as exc:\n"
        "    print(exc)"
    )
    checkout = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert "cryptography is not installed" in done.stdout


def test_open_backend_builds_plaintext_keyring_under_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    backend = open_backend("keyrings.alt.file.PlaintextKeyring", tmp_path / "unused", None)
    assert type(backend).__name__ == "PlaintextKeyring"
    keystore = Keystore(backend)
    cik = new_cik()
    keystore.store(VENDOR, MODEL, "SN-1", cik)
    assert keystore.load(VENDOR, MODEL, "SN-1") == cik
    assert (data_home / "python_keyring" / "keyring_pass.cfg").is_file()
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("dotted", "key", "expected"),
    [
        ("FileKeyring", None, "module.Class"),
        ("gatewayd.no_such_module.Backend", None, "cannot import"),
        ("gatewayd.adapters.keystore.NoSuchBackend", None, "cannot import"),
        ("gatewayd.adapters.keystore.Keystore", None, "not a keyring.backend.KeyringBackend"),
        ("gatewayd.adapters.keystore.load_key", None, "not a keyring.backend.KeyringBackend"),
        ("keyrings.alt.file.PlaintextKeyring", bytes(32), "cannot use a keystore key"),
        ("gatewayd.adapters.keystore.FileKeyring", bytes(16), "32 bytes"),
        (f"{__name__}.UnusableBackend", None, "D-Bus session"),
    ],
)
def test_open_backend_errors_name_the_class(
    tmp_path: Path, dotted: str, key: bytes | None, expected: str
) -> None:
    with pytest.raises(KeystoreError, match=expected) as raised:
        open_backend(dotted, tmp_path / "keyring", key)
    assert dotted in str(raised.value)


def test_keystore_maps_a_folder_that_is_a_file_to_keystore_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "keyring"
    not_a_folder.write_text("a regular file where the folder should be")
    keystore = Keystore(FileKeyring(folder=not_a_folder))
    cik = new_cik()
    with pytest.raises(KeystoreError, match="cannot store the CIK of serial 'SN-1'") as stored:
        keystore.store(VENDOR, MODEL, "SN-1", cik)
    assert isinstance(stored.value.__cause__, PasswordSetError)
    with pytest.raises(KeystoreError, match="cannot load the CIK of serial 'SN-1'") as loaded:
        keystore.load(VENDOR, MODEL, "SN-1")
    assert isinstance(loaded.value.__cause__, KeyringError)
    with pytest.raises(KeystoreError, match="cannot delete the CIK of serial 'SN-1'"):
        keystore.delete(VENDOR, MODEL, "SN-1")
    assert cik.reveal() not in str(stored.value)
    assert cik.reveal() not in repr(stored.value)


def test_keystore_keeps_a_backend_quoted_cik_out_of_its_message() -> None:
    keystore = Keystore(LeakyBackend())  # type: ignore[no-untyped-call, unused-ignore]
    cik = new_cik()
    with pytest.raises(KeystoreError, match="SN-1") as raised:
        keystore.store(VENDOR, MODEL, "SN-1", cik)
    assert "refused to store" in str(raised.value)
    assert cik.reveal() not in str(raised.value)
    assert cik.reveal() not in repr(raised.value)
    with pytest.raises(KeystoreError, match="locked"):
        keystore.load(VENDOR, MODEL, "SN-1")
    with pytest.raises(KeystoreError, match="cannot delete"):
        keystore.delete(VENDOR, MODEL, "SN-1")


def test_a_store_fsyncs_the_file_then_renames_it_then_fsyncs_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a stored CIK survive a power cut, not just a killed process."""
    folder = tmp_path / "keyring"
    backend = FileKeyring(folder)
    backend.set_password("warm", "up", "folder exists")
    calls: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    Keystore(backend).store("acme", "thermo-v1", "SN1", Secret("c" * 40))
    assert [call[0] for call in calls] == ["fsync", "replace", "fsync"]
    (_, synced), (_, renamed, target), (_, folder_synced) = calls
    assert synced == renamed
    assert Path(target).parent == folder
    assert folder_synced == str(folder)


def test_a_folder_removed_while_running_is_made_again_on_the_next_write(tmp_path: Path) -> None:
    folder = tmp_path / "keyring"
    keystore = Keystore(open_backend("gatewayd.adapters.keystore.FileKeyring", folder, None))
    keystore.store(VENDOR, MODEL, "SN-1", new_cik())
    shutil.rmtree(folder)
    cik = new_cik()
    with pytest.raises(KeystoreError):
        keystore.store(VENDOR, MODEL, "SN-2", cik)
    keystore.store(VENDOR, MODEL, "SN-2", cik)
    assert keystore.load(VENDOR, MODEL, "SN-2") == cik
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# --------------------------------------------------------- start-up checks


def test_the_probe_refuses_a_backend_that_folds_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyrings.alt's file backends lower-case user names: ABC1 and abc1 would share a CIK."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keystore = Keystore(open_backend("keyrings.alt.file.PlaintextKeyring", tmp_path, None))
    with pytest.raises(KeystoreError, match="does not keep user names apart by case"):
        keystore.probe()


def test_the_probe_passes_on_gatewayds_store_and_leaves_nothing(tmp_path: Path) -> None:
    keystore = Keystore(FileStore(tmp_path / "keyring"))
    keystore.probe()
    assert list((tmp_path / "keyring").iterdir()) == []


def test_a_write_a_stop_cut_between_fsync_and_rename_is_completed(tmp_path: Path) -> None:
    """What a kill leaves: a complete temp file beside (or instead of) the entry."""
    folder = tmp_path / "keyring"
    store = FileStore(folder)
    keystore = Keystore(store)
    cik = new_cik()
    keystore.store(VENDOR, MODEL, "SN-TMP1", cik)
    (entry,) = folder.iterdir()
    entry.rename(folder / f".{entry.name}.0123456789abcdef.tmp")
    torn = folder / f".{'0' * 64}.fedcba9876543210.tmp"
    torn.write_bytes(entry.name.encode()[:10])  # an entry cut short: not one
    assert keystore.load(VENDOR, MODEL, "SN-TMP1") is None
    keystore.recover()
    assert keystore.load(VENDOR, MODEL, "SN-TMP1") == cik
    assert sorted(p.name for p in folder.iterdir()) == [entry.name]


def test_the_third_party_backend_of_the_tests_keeps_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent / "thirdparty"))
    keystore = Keystore(open_backend("jsonkeyring.JsonKeyring", tmp_path, None))
    keystore.probe()  # a KeystoreError if it folded case
    upper, lower = new_cik(), new_cik()
    keystore.store(VENDOR, MODEL, "SN-CASE", upper)
    keystore.store(VENDOR, MODEL, "sn-case", lower)
    assert keystore.load(VENDOR, MODEL, "SN-CASE") == upper
    assert keystore.load(VENDOR, MODEL, "sn-case") == lower


def test_a_sealed_temp_file_that_cannot_be_checked_is_left_in_place(tmp_path: Path) -> None:
    """Without the key (or with another) a complete sealed write and a torn one look alike:
    neither is removed, nor put in place."""
    folder = tmp_path / "keyring"
    Keystore(FileStore(folder, key=bytes(range(32)))).store(VENDOR, MODEL, "SN-TMP2", new_cik())
    (entry,) = folder.iterdir()
    temp = entry.rename(folder / f".{entry.name}.0123456789abcdef.tmp")
    Keystore(FileStore(folder)).recover()  # no key
    assert sorted(p.name for p in folder.iterdir()) == [temp.name]


@pytest.mark.parametrize("key", [None, KEY])
def test_a_retired_cik_is_kept_apart_and_never_read_back_as_the_cik(
    tmp_path: Path, key: bytes | None
) -> None:
    store = Keystore(FileStore(tmp_path / "keyring", key))
    first, second = new_cik(), new_cik()
    assert not store.retire("acme", "thermo", "SN-1")  # nothing stored: nothing retired
    store.store("acme", "thermo", "SN-1", first)
    assert store.retire("acme", "thermo", "SN-1")
    assert store.load("acme", "thermo", "SN-1") is None
    assert [r.cik for r in store.retired("acme", "thermo", "SN-1")] == [first]
    store.store("acme", "thermo", "SN-1", second)
    assert store.load("acme", "thermo", "SN-1") == second
    assert [r.cik for r in store.retired("acme", "thermo", "SN-1")] == [first]
    assert len(entry_files(tmp_path / "keyring")) == 2


def _backends(tmp_path: Path) -> dict[str, Keystore]:
    folder = tmp_path / "keyring"
    return {
        "file": Keystore(FileStore(folder)),
        "encrypted": Keystore(FileStore(tmp_path / "sealed", KEY)),
        "keyring": Keystore(FileKeyring(folder=tmp_path / "keyring-backend")),
    }


@pytest.mark.parametrize("backend", ["file", "encrypted", "keyring"])
def test_every_retired_cik_of_a_serial_is_kept_with_when_and_why(
    tmp_path: Path, backend: str
) -> None:
    """X, Y and Z, each retired in turn: all three are kept, oldest first, none read back."""
    store = _backends(tmp_path)[backend]
    x, y, z = new_cik(), new_cik(), new_cik()
    before = time.time()
    for cik, why in ((x, {}), (y, {"why": "rotated"}), (z, {"why": "replaced by an import"})):
        store.store(VENDOR, MODEL, "SN-1", cik)
        assert store.retire(VENDOR, MODEL, "SN-1", **why)
        assert store.load(VENDOR, MODEL, "SN-1") is None
    retired = store.retired(VENDOR, MODEL, "SN-1")
    assert [(r.cik, r.why) for r in retired] == [
        (x, "refused by Exosite, or rotated away"),
        (y, "rotated"),
        (z, "replaced by an import"),
    ]
    moments = [r.at for r in retired if r.at is not None]
    assert len(moments) == 3
    assert before <= moments[0] <= moments[1] <= moments[2] <= time.time()
    store.store(VENDOR, MODEL, "SN-1", y)  # as a stop between its two writes leaves it
    assert store.retire(VENDOR, MODEL, "SN-1", why="again")
    assert store.retired(VENDOR, MODEL, "SN-1") == retired  # kept once, as first retired
    assert store.retired(VENDOR, MODEL, "SN-2") == ()
    assert store.retired(VENDOR, "other-model", "SN-1") == ()


def test_a_retire_writes_the_whole_list_durably_before_the_cik_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry, replaced whole (temp file, fsync, rename, fsync of the folder): a stop
    leaves the list before or after, never a part; the stored CIK goes only after it."""
    folder = tmp_path / "keyring"
    store = Keystore(FileStore(folder))
    first, second = new_cik(), new_cik()
    store.store(VENDOR, MODEL, "SN-1", first)
    store.retire(VENDOR, MODEL, "SN-1")
    store.store(VENDOR, MODEL, "SN-1", second)
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

    def fsync(fd: int) -> None:
        calls.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    def unlink(path: str | os.PathLike[str], *, dir_fd: int | None = None) -> None:
        calls.append(("unlink", os.fspath(path)))
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    assert store.retire(VENDOR, MODEL, "SN-1")
    monkeypatch.undo()
    assert [call[0] for call in calls] == ["fsync", "replace", "fsync", "unlink", "fsync"]
    (_, temp), (_, retired_entry), (_, synced), (_, deleted), (_, synced_again) = calls
    assert Path(temp).name.startswith(f".{Path(retired_entry).name}.")
    assert synced == synced_again == str(folder)
    assert deleted != retired_entry
    assert [r.cik for r in store.retired(VENDOR, MODEL, "SN-1")] == [first, second]
    assert len(entry_files(folder)) == 1  # the one list; no CIK stored


def test_the_one_retired_cik_an_earlier_gatewayd_kept_is_read_without_when_and_why(
    tmp_path: Path,
) -> None:
    backend = FileStore(tmp_path / "keyring")
    store = Keystore(backend)
    earlier, later = new_cik(), new_cik()
    backend.set_password(f"gatewayd/{VENDOR}/{MODEL}/retired", "SN-1", earlier.reveal())
    assert store.retired(VENDOR, MODEL, "SN-1") == (Retired(earlier, None, "not recorded"),)
    store.store(VENDOR, MODEL, "SN-1", later)
    assert store.retire(VENDOR, MODEL, "SN-1", why="rotated")
    assert [(r.cik, r.why) for r in store.retired(VENDOR, MODEL, "SN-1")] == [
        (earlier, "not recorded"),
        (later, "rotated"),
    ]


def test_ciks_retired_elsewhere_are_added_once_and_never_the_stored_one(tmp_path: Path) -> None:
    store = Keystore(FileStore(tmp_path / "keyring"))
    here, there, stored = new_cik(), new_cik(), new_cik()
    store.store(VENDOR, MODEL, "SN-1", here)
    store.retire(VENDOR, MODEL, "SN-1", why="rotated")
    store.store(VENDOR, MODEL, "SN-1", stored)
    elsewhere = [
        Retired(there, 1_600_000_000.0, "refused by Exosite"),
        Retired(here, 1_500_000_000.0, "replaced by an import"),  # kept here already
        Retired(stored, 1_600_000_001.0, "rotated"),  # this gateway's CIK for it
    ]
    assert store.add_retired(VENDOR, MODEL, "SN-1", elsewhere) == 1
    (kept_here, added) = store.retired(VENDOR, MODEL, "SN-1")
    assert (kept_here.cik, kept_here.why) == (here, "rotated")
    assert added == elsewhere[0]
    assert store.load(VENDOR, MODEL, "SN-1") == stored
    assert store.add_retired(VENDOR, MODEL, "SN-1", elsewhere) == 0
    assert store.add_retired(VENDOR, MODEL, "SN-2", []) == 0
    assert store.retired(VENDOR, MODEL, "SN-2") == ()


@pytest.mark.parametrize(
    "value", ["[{", '{"cik": 1}', '[{"cik": "short", "at": null, "why": "x"}]'], ids=str
)
def test_a_damaged_list_of_retired_ciks_is_a_keystore_error_quoting_no_cik(
    tmp_path: Path, value: str
) -> None:
    backend = FileStore(tmp_path / "keyring")
    backend.set_password(f"gatewayd/{VENDOR}/{MODEL}/retired", "SN-1", value)
    store = Keystore(backend)
    cik = new_cik()
    store.store(VENDOR, MODEL, "SN-1", cik)
    with pytest.raises(KeystoreError, match="cannot load the retired CIKs of serial 'SN-1'"):
        store.retired(VENDOR, MODEL, "SN-1")
    with pytest.raises(KeystoreError) as raised:
        store.retire(VENDOR, MODEL, "SN-1")
    assert cik.reveal() not in str(raised.value)
    assert store.load(VENDOR, MODEL, "SN-1") == cik  # not deleted: it could not be kept
