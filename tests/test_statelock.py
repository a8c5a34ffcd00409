"""The state folder's lock (:mod:`gatewayd.adapters.statelock`): one gatewayd, or one
gatewayctl writing the folder itself, at a time.

The lock's holders are real processes. Where a test needs one of them to stop while it
holds the lock, a file it reads is a FIFO: gatewayctl's passphrase file (read once the
lock is taken) or gatewayd's vendor token file (read after the lock, before the control
socket answers); the test's open of the FIFO's other end returns once the process has
opened it, and the process goes on once the test writes and closes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway
from test_bundle import (
    MakeGateway,
    exported,
    stored_here,
    third_party_importable,  # noqa: F401 (autouse: gatewayctl runs in this process too)
)

from gatewayd.adapters.statedb import StateDB
from gatewayd.adapters.statelock import (
    GATEWAYCTL,
    GATEWAYD,
    LOCK_NAME,
    Holder,
    StateLock,
    StateLockedError,
)
from gatewayd.core.model import State
from gatewayd.sim import Simulator
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.e2e

PASSPHRASE = b"correct horse battery staple\n"
TOKEN = b"a-vendor-token-for-the-test\n"
HOLD = """
import sys
from pathlib import Path
from gatewayd.adapters.statelock import StateLock
lock = StateLock.take(Path(sys.argv[1]), sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""
"""A process that holds the lock of the folder argv[1] as argv[2] until its stdin closes."""


@contextlib.contextmanager
def holder(folder: Path, role: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.stdin.close()
        process.wait(WAIT)
        process.stdout.close()


# ------------------------------------------------------------------ the lock itself


def test_a_second_process_is_refused_and_told_who_holds_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    with holder(folder, GATEWAYCTL) as process:
        with pytest.raises(StateLockedError) as refused:
            StateLock.take(folder, GATEWAYD)
        assert refused.value.holder == Holder(GATEWAYCTL, process.pid)
        assert str(refused.value) == (
            f"the state folder {folder} is locked by gatewayctl (pid {process.pid})"
        )
        assert (folder / LOCK_NAME).read_text() == f"gatewayctl {process.pid}\n"
    with StateLock.take(folder, GATEWAYD):  # its holder gone, the lock is free
        assert (folder / LOCK_NAME).read_text() == f"gatewayd {os.getpid()}\n"
    assert (folder / LOCK_NAME).read_bytes() == b""  # emptied when let go


def test_the_lock_is_one_per_folder_even_within_a_process(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    with StateLock.take(folder, GATEWAYD):
        with pytest.raises(StateLockedError):
            StateLock.take(folder, GATEWAYCTL)
        with StateLock.take(tmp_path / "other", GATEWAYD):
            pass
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / LOCK_NAME).stat().st_mode) == 0o600


def test_a_holder_whose_file_says_nothing_is_another_process(tmp_path: Path) -> None:
    """What the file says serves the message only: the kernel says whether it is held."""
    folder = tmp_path / "state"
    with StateLock.take(folder, GATEWAYD):
        (folder / LOCK_NAME).write_text("gatewayd 12 and more\n")
        with pytest.raises(StateLockedError) as refused:
            StateLock.take(folder, GATEWAYCTL)
    assert refused.value.holder == Holder()
    assert str(refused.value) == f"the state folder {folder} is locked by another process"


def test_a_lock_file_root_creates_is_the_folders_owners(tmp_path: Path) -> None:
    """gatewayctl run as root must not leave gatewayd a lock file it cannot open."""
    if os.geteuid() != 0:
        pytest.skip("giving a file away needs root")
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65533)
    with StateLock.take(folder, GATEWAYCTL):
        made = (folder / LOCK_NAME).stat()
    assert (made.st_uid, made.st_gid) == (65534, 65533)


# ------------------------------------------------------------------ gatewayd and gatewayctl


def fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def opened(path: Path) -> int:
    """The writing end of the FIFO ``path``, once a process has opened it to read."""
    got: list[int] = []
    thread = threading.Thread(target=lambda: got.append(os.open(path, os.O_WRONLY)))
    thread.start()
    thread.join(WAIT)
    if not got:  # no reader came: let the thread go, and fail
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(WAIT)
        for fd in (reader, *got):
            os.close(fd)
        pytest.fail(f"nothing opened {path} within {WAIT} s")
    return got[0]


def give(fd: int, data: bytes) -> None:
    os.write(fd, data)
    os.close(fd)


def gatewayctl(gw: Gateway, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gatewayd.ctl.main", "--config", str(gw.config_path), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=gw.env,
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=WAIT)
    return process.returncode, out, err


def refused_start(gw: Gateway) -> str:
    """Start gatewayd, which must exit 1 at once; what it logged."""
    gw.start(wait_connected=False)
    assert gw.stop(None) == 1
    return gw.log_text()


def all_there(gw: Gateway, ciks: dict[str, str]) -> None:
    """Every node of ``ciks`` activated in the gateway's state, with its CIK in its keystore."""
    with StateDB.in_dir(gw.state_dir, readonly=True) as db:
        nodes = {node.sn: node for node in db.all()}
    assert set(nodes) == set(ciks)
    assert {node.state for node in nodes.values()} == {State.ACTIVATED}
    assert {node.vendor for node in nodes.values()} == {VENDOR}
    assert {node.model for node in nodes.values()} == {MODEL}
    for sn, value in ciks.items():
        stored = stored_here(gw, sn)
        assert stored is not None
        assert stored.reveal() == value


def test_gatewayd_does_not_start_while_an_offline_import_writes(
    tmp_path: Path, gateway: MakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_bytes(PASSPHRASE)
    passphrase.chmod(0o600)
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 50)
    new.state_dir.mkdir(mode=0o700)  # as the package leaves it
    paused = fifo(tmp_path / "paused-passphrase")
    importing = gatewayctl(new, "import", str(bundle), "--passphrase-file", str(paused))
    end = opened(paused)  # gatewayctl holds the lock, and waits for its passphrase
    try:
        log = refused_start(new)
        assert (
            f"cannot start: the state folder {new.state_dir} is locked by gatewayctl "
            f"(pid {importing.pid})"
        ) in log
        other = gatewayctl(new, "import", str(bundle), "--passphrase-file", str(passphrase))
        code, out, err = finished(other)
        assert (code, out) == (1, "")
        assert err == (
            f"gatewayctl: another gatewayctl holds the state (pid {importing.pid} holds "
            f"{new.state_dir}): try again once it has finished\n"
        )
    finally:
        give(end, PASSPHRASE)
    code, out, err = finished(importing)
    assert (code, err) == (0, "")
    assert out.startswith(f"50 nodes imported into {new.state_dir}, ")
    new.start()  # the import done, gatewayd starts
    assert new.stop() == 0
    all_there(new, ciks)


def test_an_import_while_gatewayd_starts_is_refused(
    tmp_path: Path, gateway: MakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_bytes(PASSPHRASE)
    passphrase.chmod(0o600)
    token = fifo(tmp_path / "vendor-token")
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 50)
    new.rewrite(exosite={"vendor_token_file": str(token)})
    new.start(wait_connected=False)
    end = opened(token)  # gatewayd holds the lock; its control socket does not answer yet
    try:
        assert new.process is not None
        pid = new.process.pid
        importing = gatewayctl(new, "import", str(bundle), "--passphrase-file", str(passphrase))
        code, out, err = finished(importing)
    finally:
        give(end, TOKEN)
    assert (code, out) == (1, "")
    assert err == (
        f"gatewayctl: gatewayd is running: use the running daemon (pid {pid} holds "
        f"{new.state_dir} but does not answer on {new.control_socket}: it is starting or "
        "stopping; try again)\n"
    )
    new.wait_for("subscribed to ")
    code, out, err = finished(
        gatewayctl(new, "import", str(bundle), "--passphrase-file", str(passphrase))
    )
    assert (code, err) == (0, "")
    assert out.startswith("50 nodes imported into the running gatewayd, ")
    assert new.stop() == 0
    all_there(new, ciks)


def test_an_import_gatewayd_stopped_under_is_refused_if_another_has_started(
    tmp_path: Path, gateway: MakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """gatewayd answers when the import starts, so it does not take the lock; by the time
    it has read its bundle, that gatewayd has stopped and another is starting (a restart):
    the import, about to write the folder itself, takes the lock, and is refused."""
    passphrase = tmp_path / "passphrase"
    passphrase.write_bytes(PASSPHRASE)
    passphrase.chmod(0o600)
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 50)
    new.start()
    paused = fifo(tmp_path / "paused-passphrase")
    importing = gatewayctl(new, "import", str(bundle), "--passphrase-file", str(paused))
    end = opened(paused)
    try:
        assert new.stop() == 0
        token = fifo(tmp_path / "vendor-token")
        new.rewrite(exosite={"vendor_token_file": str(token)})
        new.start(wait_connected=False)
        assert new.process is not None
        pid = new.process.pid
        starting = opened(token)
    finally:
        give(end, PASSPHRASE)
    try:
        code, out, err = finished(importing)
    finally:
        give(starting, TOKEN)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"gatewayctl: gatewayd is running: use the running daemon (pid {pid} holds "
    )
    new.wait_for("subscribed to ")
    code, out, err = finished(
        gatewayctl(new, "import", str(bundle), "--passphrase-file", str(passphrase))
    )
    assert (code, err) == (0, "")
    assert new.stop() == 0
    all_there(new, ciks)


def test_a_second_gatewayd_on_the_same_state_does_not_start(
    tmp_path: Path,
    gateway: MakeGateway,
    broker: Broker,
    simulator: Simulator,
    keyring_backend: str,
) -> None:
    first = gateway()
    first.start()
    assert first.process is not None
    second = Gateway(
        tmp_path / "second",
        broker,
        simulator,
        gateway={"state_dir": str(first.state_dir)},
        keyring={"backend": keyring_backend},
    )
    try:
        log = refused_start(second)
    finally:
        second.stop(signal.SIGKILL)
    assert (
        f"cannot start: the state folder {first.state_dir} is locked by gatewayd "
        f"(pid {first.process.pid})"
    ) in log
    assert first.ctl("status").returncode == 0  # the first goes on
    assert first.stop() == 0
