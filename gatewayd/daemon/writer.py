"""The writer: a thread that makes batches durable while the main loop goes on.

The main thread hands it a batch: the CIKs to store, after committing the state
database's records of the same batch (not yet durable). The writer writes each
CIK to its temp file, flushes every file system once (``syncfs``: the CIKs and
the committed records with them), renames the CIKs into place, and hands back
a :class:`Flushed` saying which CIKs are stored. One flush covers whatever
arrived during the one before: a storm of answers costs a flush per batch, not
an fsync or two per CIK.

Nothing of a batch is known to be durable before :class:`Flushed` arrives; the
main thread publishes a CIK, logs it as done and records its node ``activated``
only then.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gatewayd.core.actions import StoreCik
from gatewayd.core.errors import KeystoreError

if TYPE_CHECKING:
    from gatewayd.adapters.disk import Volumes
    from gatewayd.adapters.filestore import Staged
    from gatewayd.adapters.keystore import Keystore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Flushed:
    """Batch ``number`` is done. ``stored``: its CIKs now durable and in place;
    ``failed``: the others, each with why; ``error``: why the flush failed, when it did
    (then nothing of the batch is known durable, records included)."""

    number: int
    stored: tuple[StoreCik, ...] = ()
    failed: tuple[tuple[StoreCik, str], ...] = ()
    error: str | None = None


class Writer:
    def __init__(
        self, keystore: Keystore, volumes: Volumes, done: Callable[[Flushed], None]
    ) -> None:
        self._keystore = keystore
        self._volumes = volumes
        self._done = done
        self._jobs: queue.SimpleQueue[tuple[int, Sequence[StoreCik]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def submit(self, number: int, ciks: Sequence[StoreCik]) -> None:
        """Flush batch ``number``: store ``ciks`` and make them, and everything written
        to the volumes before this call, durable."""
        self._jobs.put((number, ciks))

    def close(self, timeout: float) -> None:
        """Finish the batches submitted; flush once more (what was committed since, such as
        the last records saved ``activated``), then stop. A flush that does not end within
        ``timeout`` seconds (a storage that hangs) is left behind: what it was writing is
        in temp files the next start completes."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.critical(
                "the storage has not finished a flush in %.0f s: stopping without it", timeout
            )
            return
        try:
            self._volumes.sync()
        except OSError as exc:
            log.error("cannot flush %s at the stop: %s", exc.filename, exc.strerror)  # noqa: TRY400
        self._volumes.close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            number, ciks = job
            try:
                flushed = self._flush(number, ciks)
            except BaseException as exc:  # the main thread must hear of every batch
                log.exception("batch %d: the writer failed", number)
                why = f"internal error: {type(exc).__name__}"
                flushed = Flushed(number, failed=tuple((c, why) for c in ciks), error=why)
            self._done(flushed)

    def _flush(self, number: int, ciks: Sequence[StoreCik]) -> Flushed:
        failed: list[tuple[StoreCik, str]] = []
        staged = self._stage(ciks, failed)
        try:
            self._volumes.sync()
        except OSError as exc:
            why = f"cannot flush {exc.filename}: {exc.strerror or type(exc).__name__}"
            for _cik, entry in staged:
                if entry is not None:
                    entry.discard()
            return Flushed(number, failed=(*failed, *((c, why) for c, _ in staged)), error=why)
        stored: list[StoreCik] = []
        for cik, entry in staged:
            try:
                if entry is not None:
                    self._keystore.place(entry, cik.sn)
            except Exception as exc:  # noqa: BLE001 (as in _stage)
                failed.append((cik, _problem(exc)))
            else:
                stored.append(cik)
        log.debug("batch %d flushed: %d CIKs stored", number, len(stored))
        return Flushed(number, tuple(stored), tuple(failed))

    def _stage(
        self, ciks: Sequence[StoreCik], failed: list[tuple[StoreCik, str]]
    ) -> list[tuple[StoreCik, Staged | None]]:
        """Write each CIK to its temp file (another backend takes it at once); those that
        cannot be written go to ``failed``."""
        staged: list[tuple[StoreCik, Staged | None]] = []
        for cik in ciks:
            try:
                entry = self._keystore.stage(
                    cik.vendor, cik.model, cik.sn, cik.cik, unverified=cik.unverified
                )
            except Exception as exc:  # noqa: BLE001 (whatever a backend raises, the CIK stays)
                failed.append((cik, _problem(exc)))
            else:
                staged.append((cik, entry))
        return staged


def _problem(exc: Exception) -> str:
    return str(exc) if isinstance(exc, KeystoreError) else type(exc).__name__
