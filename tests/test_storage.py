"""A state folder that stops taking writes: the disk is full.

gatewayd's state folder is a small tmpfs of its own (mounting one needs root),
filled to the last byte while gatewayd runs. (Other write errors, EIO among
them, are injected at every system call by the crash-point tests.) No
request may leave before its record is on disk; the node waits as pending,
and everything resumes by itself once the disk takes writes again.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, Gateway

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.core.model import State
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]


@pytest.fixture
def keyring_backend() -> str:
    """gatewayd's own backend: its files live on the small disk too."""
    return KEYRING_BACKENDS["file"]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left") as raised:  # noqa: PT012 (until full)
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    assert raised.value.errno == errno.ENOSPC
    return filler


def stored_cik(folder: Path, sn: str) -> str | None:
    cik = Keystore(FileKeyring(folder / "keyring")).load(VENDOR, MODEL, sn)
    return None if cik is None else cik.reveal()


def test_no_request_leaves_while_the_disk_is_full(
    disk: Path,
    registry: Registry,
    gateway: MakeGateway,
    node: MakeNode,
) -> None:
    registry.add(VENDOR, MODEL, "SN-D1")
    gw = gateway(gateway={"state_dir": str(disk)})
    gw.start()
    filler = fill(disk)
    n = node("SN-D1")
    n.announce()
    answer = n.next_answer()
    # the node is told to wait, and Exosite has not been asked
    assert answer.body["status"] == "pending"
    assert "not sent" in str(answer.body["message"])
    gw.wait_for(r"CRITICAL .*no activation or re-enable request is sent")
    assert registry.calls("SN-D1") == 0
    # its retries do not reach Exosite either, and the CRITICAL line is not repeated
    gw.wait_for(r"node SN-D1: activation failed \(not sent.*attempt 2")
    assert registry.calls("SN-D1") == 0
    filler.unlink()
    body = n.activate()
    assert body["status"] == "activated"
    (cik,) = [c for sn, c in registry.issued() if sn == "SN-D1"]
    assert body["cik"] == cik
    gw.wait_for(r"the state database takes writes again")
    assert gw.stop() == 0
    assert gw.log_text().count("no activation or re-enable request is sent") == 1
    assert registry.calls("SN-D1") == 1
    assert stored_cik(disk, "SN-D1") == cik
    with StateDB.in_dir(disk, readonly=True) as db:
        record = db.get("SN-D1")
    assert record is not None
    assert record.state is State.ACTIVATED


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Makes a folder read-only, for root too (a read-only bind mount of itself)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    mounted: list[Path] = []

    def make(folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        mounted.append(folder)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("where", ["keyring", "state"])
def test_a_folder_that_takes_no_writes_stops_the_start_naming_it_and_its_owner(
    where: str, read_only: Callable[[Path], None], gateway: MakeGateway
) -> None:
    gw = gateway()
    folder = gw.state_dir / "keyring" if where == "keyring" else gw.state_dir
    gw.state_dir.mkdir(mode=0o700)
    if where == "state":
        StateDB.in_dir(gw.state_dir).close()  # a database made before the folder turned
    read_only(folder)
    gw.start(wait_connected=False)
    assert gw.stop(signum=None) == 1
    log = gw.log_text()
    assert re.search(rf"cannot start: .*{re.escape(str(folder))}", log), log
    assert "Read-only file system" in log
    assert f"{folder} is owned by root (uid 0), mode 0700; gatewayd runs as root" in log
    assert "Traceback" not in log


def test_a_backend_that_folds_case_is_refused_at_start(gateway: MakeGateway) -> None:
    gw = gateway(keyring={"backend": "keyrings.alt.file.PlaintextKeyring"})
    gw.start(wait_connected=False)
    assert gw.stop(signum=None) == 1
    assert "does not keep user names apart by case" in gw.log_text()


def test_gatewayctl_never_writes_the_daemons_keyring(
    tmp_path: Path, registry: Registry, gateway: MakeGateway
) -> None:
    """Run as root before gatewayd ever ran, it would have made a root-owned keyring folder
    and vendor token entry that gatewayd then cannot use."""
    token = tmp_path / "vendor-token"
    token.write_text("tok-ctl-4242\n")
    registry.set_vendor_token("tok-ctl-4242")
    registry.add(VENDOR, MODEL, "SN-V1")
    gw = gateway(exosite={"vendor_token_file": str(token)})
    asked = gw.ctl("sn-status", "SN-V1", "--json")
    assert asked.returncode == 0, asked.stderr
    assert not (gw.state_dir / "keyring").exists()
    assert not gw.state_dir.exists()
