"""Before READY=1: can gatewayd keep what Exosite gives only once?

A CIK arrives once. A state folder or keystore that cannot be written (created
by root, a read-only file system, a full disk) would be found only when the
first CIK arrives; so at start gatewayd writes, fsyncs, reads back and deletes
a test entry in each, and refuses to start when it cannot, naming the path,
its owner and the user gatewayd runs as. The keystore's test also proves that
it keeps user names apart by case (two nodes must never share one CIK). Before
any of that it takes the state folder's lock (:func:`lock_state`). Once
started, it looks for activated nodes whose CIK was retired with none stored
(:func:`retired_only`).
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from gatewayd.adapters import logs
from gatewayd.adapters.filestore import FileStore
from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.adapters.statelock import GATEWAYD, StateLock, StateLockedError
from gatewayd.core.errors import KeystoreError, StateError
from gatewayd.core.events import CikLookedUp
from gatewayd.core.model import Node, State

log = logging.getLogger(__name__)


def lock_state(state_dir: Path) -> StateLock:
    """The state folder's lock, which gatewayd holds for its whole life, taken before the
    state or the keystore is opened: StateLockedError naming the process that holds it
    (another gatewayd, or a gatewayctl writing the folder), or a StateError that says
    where and whose the folder is if it cannot be locked."""
    try:
        return StateLock.take(state_dir, GATEWAYD)
    except StateLockedError:
        raise
    except StateError as exc:
        raise StateError(f"{exc}{ownership(state_dir)}") from exc


def open_state(state_dir: Path) -> StateDB:
    """The state database, once the folder and the database have taken a write; else a
    StateError that says where and whose."""
    state = None
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _probe_folder(state_dir)
        state = StateDB.in_dir(state_dir)
        state.check_writable()
    except (OSError, StateError) as exc:
        if state is not None:
            state.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StateError(f"cannot write to {state_dir} ({why}){ownership(state_dir)}") from exc
    return state


def check_keystore(keystore: Keystore) -> None:
    """KeystoreError, saying where and whose, if the keystore cannot keep a CIK."""
    try:
        keystore.probe()
    except KeystoreError as exc:
        backend = keystore.backend
        where = ownership(backend.folder) if isinstance(backend, FileStore) else ""
        raise KeystoreError(f"{exc}{where}") from exc


def _probe_folder(folder: Path) -> None:
    """Write, fsync, read back and delete a small file in ``folder``."""
    path = folder / f".gatewayd-probe-{secrets.token_hex(8)}"
    data = secrets.token_bytes(16)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        if os.pread(fd, len(data), 0) != data:
            raise OSError(0, "what was written did not read back")
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def ownership(path: Path) -> str:
    """ "; PATH is owned by USER (uid N), mode 0700; gatewayd runs as USER (uid M)"."""
    me = os.geteuid()
    try:
        info = path.stat()
    except OSError:
        return f"; gatewayd runs as {_user(me)}"
    mode = stat.S_IMODE(info.st_mode)
    return (
        f"; {path} is owned by {_user(info.st_uid)}, mode {mode:04o}; gatewayd runs as {_user(me)}"
    )


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def retired_only(keystore: Keystore, nodes: Iterable[Node]) -> list[CikLookedUp]:
    """What the keystore says of each activated node with no CIK stored but one retired (a
    stop between the retire and the record saying so, by an earlier gatewayd): the engine
    recovers each. A node the keystore cannot tell of is left to its next announce."""
    found = []
    for node in nodes:
        if node.state is not State.ACTIVATED:
            continue
        try:
            if keystore.has_retired(node.vendor, node.model, node.sn) and (
                keystore.load(node.vendor, node.model, node.sn) is None
            ):
                found.append(CikLookedUp(node.sn, None, retired=True))
        except KeystoreError as exc:
            log.warning(
                "node %s: cannot read its CIK at start: %s", node.sn, exc, extra=logs.about(node.sn)
            )
    return found
