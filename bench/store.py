"""Store scaling: the cost of storing and of reading one node (keyring + state row) with
100, 10,000 and 100,000 nodes already stored. Nothing may rewrite the whole store per write.

The stores are filled through the same classes with fsync turned off (filling is
not what is measured); the measured operations run with it on, as in gatewayd.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from support import MODEL, VENDOR

from gatewayd.adapters import filestore
from gatewayd.adapters.filestore import FileStore
from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.statedb import StateDB
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret

KEY = bytes(range(32))
OPS = 200
READ_PASSES = 5


def node(sn: str) -> Node:
    return Node(sn, VENDOR, MODEL, State.ACTIVATED, 1_700_000_000.0, activated_at=1_700_000_001.0)


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    with mock.patch("os.fsync"), mock.patch.object(filestore, "_fsync_folder"):
        yield


def fill(folder: Path, count: int) -> tuple[Keystore, StateDB]:
    store = Keystore(FileStore(folder / "keyring", KEY))
    db = StateDB.in_dir(folder)
    db._db.execute("PRAGMA synchronous=OFF")  # noqa: SLF001 (filling only)
    with no_fsync():
        db._db.execute("BEGIN")  # noqa: SLF001
        for i in range(count):
            sn = f"FILL{i:06d}"
            store.store(VENDOR, MODEL, sn, Secret(secrets.token_hex(20)))
            db.save(node(sn))
        db._db.execute("COMMIT")  # noqa: SLF001
    db._db.execute("PRAGMA synchronous=FULL")  # noqa: SLF001
    return store, db


def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gwbench-store-") as folder:
        store, db = fill(Path(folder), count)
        serials = [f"NEW{i:04d}" for i in range(OPS)]
        started = time.perf_counter()
        for sn in serials:
            store.store(VENDOR, MODEL, sn, Secret(secrets.token_hex(20)))
            db.save(node(sn))
        write = (time.perf_counter() - started) / OPS
        # the nodes just stored and as many stored before them, read in several passes:
        # one pass of a fraction of a millisecond each is mostly noise
        older = random.Random(count).sample(range(count), min(OPS, count))
        reads = serials + [f"FILL{i:06d}" for i in older]
        passes = []
        for _ in range(READ_PASSES):
            started = time.perf_counter()
            for sn in reads:
                if store.load(VENDOR, MODEL, sn) is None or db.get(sn) is None:
                    raise RuntimeError(f"{sn} was stored and cannot be read")
            passes.append((time.perf_counter() - started) / len(reads))
        read = statistics.median(passes)
        db.close()
    return {"store_ms": write * 1000, "read_ms": read * 1000}


def run(counts: tuple[int, ...] = (100, 10_000, 100_000)) -> dict[str, Any]:
    figures = {str(count): measure(count) for count in counts}
    low, high = figures[str(counts[0])], figures[str(counts[-1])]
    return {
        "per_count": figures,
        "store_ratio": high["store_ms"] / low["store_ms"],
        "read_ratio": high["read_ms"] / low["read_ms"],
        "disk": os.statvfs(tempfile.gettempdir()).f_bsize,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
