"""Where CIKs live: the one adapter the daemon and gatewayctl use for secrets.

:class:`Keystore` turns every failure of its backend into
:class:`~gatewayd.core.errors.KeystoreError`. The backend is named in the
configuration. The default, ``gatewayd.adapters.keystore.FileKeyring``, is gatewayd's own
file store (:mod:`gatewayd.adapters.filestore`), used directly: the keyring library is
loaded only for another backend (it adds 50 ms to a start and 2 MiB to a small
gateway). ``FileKeyring`` itself is that store as a real keyring backend
(:mod:`gatewayd.adapters.keyring_backend`), for keyring's API and command line.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from gatewayd.adapters.filestore import (
    DEFAULT_FOLDER,
    EntryMissing,
    FileStore,
    FileStoreError,
    Staged,
)
from gatewayd.adapters.keyfile import KEY_CREDENTIAL, KEY_SIZE, load_key
from gatewayd.core import retired as retirement
from gatewayd.core.errors import KeystoreError
from gatewayd.core.retired import REFUSED_OR_ROTATED, Retired
from gatewayd.core.secret import Secret

if TYPE_CHECKING:
    from gatewayd.adapters.keyring_backend import FileKeyring

__all__ = [
    "DEFAULT_FOLDER",
    "FILE_KEYRING",
    "KEY_CREDENTIAL",
    "KEY_SIZE",
    "Backend",
    "FileKeyring",
    "Keystore",
    "load_key",
    "open_backend",
]

log = logging.getLogger(__name__)

FILE_KEYRING: Final = "gatewayd.adapters.keystore.FileKeyring"
FILE_KEYRING_NAMES: Final = frozenset({FILE_KEYRING, "gatewayd.keystore.FileKeyring"})
"""The file store's names in the configuration: the second is the one of gatewayd 0.1.0."""
UNVERIFIED: Final = "/unverified"
"""Suffix of the service under which 2xx bodies that are no CIK are kept."""
RETIRED: Final = "/retired"
"""Suffix of the service under which the CIKs of a serial that were retired are kept
(:mod:`gatewayd.core.retired`), never handed out."""
TOKEN_USERNAME: Final = "vendor-token"  # noqa: S105 (a user name, not a secret)


def __getattr__(name: str) -> object:
    """``FileKeyring`` is imported when first asked for: it needs the keyring library."""
    if name == "FileKeyring":
        from gatewayd.adapters.keyring_backend import FileKeyring  # noqa: PLC0415 (see above)

        return FileKeyring
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Backend(Protocol):
    """What the keystore needs of a backend: the three calls of a keyring backend."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def open_backend(dotted: str, folder: Path, key: bytes | None) -> Backend:
    """Construct the backend class named ``module.Class``; never auto-detects."""
    if dotted in FILE_KEYRING_NAMES:
        try:
            return FileStore(folder=folder, key=key)
        except FileStoreError as exc:
            raise KeystoreError(f"keyring backend {dotted}: cannot set it up: {exc}") from exc
    from keyring.backend import KeyringBackend  # noqa: PLC0415 (only for another backend)
    from keyring.errors import KeyringError  # noqa: PLC0415

    from gatewayd.adapters.keyring_backend import FileKeyring  # noqa: PLC0415

    module_name, _, class_name = dotted.rpartition(".")
    if not module_name or not class_name:
        raise KeystoreError(f"keyring backend {dotted!r}: expected a dotted module.Class name")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise KeystoreError(f"keyring backend {dotted}: cannot import it: {exc}") from exc
    if not isinstance(found, type) or not issubclass(found, KeyringBackend):
        raise KeystoreError(f"keyring backend {dotted}: not a keyring.backend.KeyringBackend")
    try:
        if issubclass(found, FileKeyring):
            return found(folder=folder, key=key)
        if key is not None:
            raise KeystoreError(
                f"keyring backend {dotted} cannot use a keystore key; "
                f"use {FILE_KEYRING} or give no key"
            )
        found.priority  # noqa: B018 (a backend that cannot run here raises RuntimeError)
        return found()
    except (KeyringError, OSError, RuntimeError, TypeError, ValueError) as exc:
        raise KeystoreError(f"keyring backend {dotted}: cannot set it up: {exc}") from exc


class Keystore:
    """Stores, loads and deletes CIKs; the username is the serial, case preserved."""

    def __init__(self, backend: Backend, service_prefix: str = "gatewayd") -> None:
        self._backend = backend
        self._prefix = service_prefix
        self._lock = threading.Lock()
        self._errors: tuple[type[Exception], ...] = (FileStoreError, OSError, ValueError)
        self._missing: type[Exception] = EntryMissing
        if not isinstance(backend, FileStore):  # a keyring backend: keyring is loaded already
            from keyring.errors import KeyringError, PasswordDeleteError  # noqa: PLC0415

            self._errors = (KeyringError, OSError, ValueError)
            self._missing = PasswordDeleteError

    @property
    def backend(self) -> Backend:
        return self._backend

    def service(self, vendor: str, model: str) -> str:
        return f"{self._prefix}/{vendor}/{model}"

    def store(self, vendor: str, model: str, sn: str, cik: Secret) -> None:
        """Store the CIK of ``sn``; with FileKeyring it is on disk when this returns."""
        with self._mapped("store the CIK of", sn, cik.reveal()):
            self._backend.set_password(self.service(vendor, model), sn, cik.reveal())
        log.debug("stored the CIK of %s in %s", sn, self.service(vendor, model))

    def store_unverified(self, vendor: str, model: str, sn: str, body: Secret) -> None:
        """Keep a 2xx body that is not a complete CIK, apart from the node's CIK: it is never
        read back as one (``gatewayctl show --reveal`` shows it to the operator)."""
        service = self.service(vendor, model) + UNVERIFIED
        with self._mapped("keep the unverified answer for", sn, body.reveal()):
            self._backend.set_password(service, sn, body.reveal())

    def load_unverified(self, vendor: str, model: str, sn: str) -> Secret | None:
        with self._mapped("load the unverified answer for", sn):
            value = self._backend.get_password(self.service(vendor, model) + UNVERIFIED, sn)
        return None if value is None else Secret(value)

    def stage(
        self, vendor: str, model: str, sn: str, cik: Secret, *, unverified: bool = False
    ) -> Staged | None:
        """Write the CIK of ``sn`` without waiting for the disk: it is durable once the
        keystore's folder is flushed, and readable once :meth:`place` has put it in place.
        A backend other than gatewayd's own store takes it at once (durably or not, as
        that backend does): then None."""
        service = self.service(vendor, model) + (UNVERIFIED if unverified else "")
        what = "keep the unverified answer for" if unverified else "store the CIK of"
        with self._mapped(what, sn, cik.reveal()):
            if isinstance(self._backend, FileStore):
                return self._backend.stage(service, sn, cik.reveal())
            self._backend.set_password(service, sn, cik.reveal())
            return None

    def place(self, staged: Staged, sn: str) -> None:
        """Put the staged CIK of ``sn`` in place, once its folder is flushed."""
        with self._mapped("store the CIK of", sn):
            staged.place()

    @property
    def folder(self) -> Path | None:
        """The folder of gatewayd's own store; None for another backend."""
        return self._backend.folder if isinstance(self._backend, FileStore) else None

    def prepare(self) -> None:
        """Load what sealing a CIK needs (cryptography, for gatewayd's own store with a key)
        now: the first CIK stored then waits for no import, with the keystore held."""
        if isinstance(self._backend, FileStore):
            self._backend.prepare()

    def recover(self) -> None:
        """Put in place the entries a stop left half written (gatewayd's own store)."""
        if not isinstance(self._backend, FileStore):
            return
        with self._mapped("recover the entries of", str(self._backend.folder)):
            recovered = self._backend.recover()
        if recovered:
            log.warning(
                "%d keystore entries were completed from writes a stop interrupted", recovered
            )

    def probe(self) -> None:
        """Write, read back and delete two entries whose names differ only in case: a
        keystore that cannot, or that folds case (two nodes would share one CIK), is
        refused with a KeystoreError that says where and why."""
        service = f"{self._prefix}/probe"
        upper = f"Probe-{secrets.token_hex(4)}"
        values = {upper: secrets.token_hex(16), upper.lower(): secrets.token_hex(16)}
        # gatewayd's own store is probed unsealed: the test entries hold no secret, and
        # sealing them would load cryptography at every start (5 to 10 MiB an idle gateway
        # never needs: it is loaded with the first CIK sealed or read)
        backend = self._backend
        if isinstance(backend, FileStore):
            backend = backend.unsealed()
        with self._mapped("write, read back and delete a test entry as", upper):
            for name, value in values.items():
                backend.set_password(service, name, value)
            read = {name: backend.get_password(service, name) for name in values}
            for name in values:
                with contextlib.suppress(*self._errors):
                    backend.delete_password(service, name)
        if read != values:
            raise KeystoreError(
                f"keyring backend {type(self._backend).__module__}."
                f"{type(self._backend).__name__} does not keep user names apart by case: "
                f"nodes ABC1 and abc1 would share one CIK; use {FILE_KEYRING}"
            )

    def load(self, vendor: str, model: str, sn: str) -> Secret | None:
        with self._mapped("load the CIK of", sn):
            value = self._backend.get_password(self.service(vendor, model), sn)
        return None if value is None else Secret(value)

    def store_token(self, vendor: str, token: Secret) -> None:
        """Keep the vendor API token of ``vendor`` (under the service ``<prefix>/<vendor>``)."""
        with self._mapped("store the vendor token of", vendor, token.reveal()):
            self._backend.set_password(f"{self._prefix}/{vendor}", TOKEN_USERNAME, token.reveal())

    def load_token(self, vendor: str) -> Secret | None:
        with self._mapped("load the vendor token of", vendor):
            value = self._backend.get_password(f"{self._prefix}/{vendor}", TOKEN_USERNAME)
        return None if value is None else Secret(value)

    def retire(self, vendor: str, model: str, sn: str, *, why: str = REFUSED_OR_ROTATED) -> bool:
        """Move the CIK of ``sn`` apart: it joins the serial's retired CIKs, with the time
        (wall clock) and ``why``, on disk before the CIK is deleted, and is never read back
        as its CIK. False if there was none."""
        cik = self.load(vendor, model, sn)
        if cik is None:
            return False
        self._keep_retired(vendor, model, sn, [Retired(cik, time.time(), why)])
        self._delete(self.service(vendor, model), sn)
        log.debug("retired the CIK of %s (%s)", sn, why)
        return True

    def has_retired(self, vendor: str, model: str, sn: str) -> bool:
        """Whether a CIK of ``sn`` was ever retired (and is kept apart)."""
        service = self.service(vendor, model) + RETIRED
        if isinstance(self._backend, FileStore):  # without reading it
            return self._backend.has(service, sn)
        with self._mapped("look for the retired CIKs of", sn):
            return self._backend.get_password(service, sn) is not None

    def retired(self, vendor: str, model: str, sn: str) -> tuple[Retired, ...]:
        """Every CIK of ``sn`` retired, oldest first."""
        with self._mapped("load the retired CIKs of", sn):
            value = self._backend.get_password(self.service(vendor, model) + RETIRED, sn)
            return () if value is None else retirement.decode(value)

    def add_retired(self, vendor: str, model: str, sn: str, more: Sequence[Retired]) -> int:
        """Add CIKs retired elsewhere (a bundle's) to those of ``sn``, each with its own time
        and reason, on disk when this returns; none that is kept already, nor the CIK stored
        for it (it is the serial's CIK here). How many were added."""
        if not more:
            return 0
        stored = self.load(vendor, model, sn)
        return self._keep_retired(vendor, model, sn, [r for r in more if r.cik != stored])

    def _keep_retired(self, vendor: str, model: str, sn: str, more: Sequence[Retired]) -> int:
        """Write the retired CIKs of ``sn`` with ``more`` added: one entry, replaced whole
        and durably (a stop leaves the old list or the new one)."""
        kept = self.retired(vendor, model, sn)
        updated = retirement.added(kept, more)
        if len(updated) == len(kept):
            return 0
        service = self.service(vendor, model) + RETIRED
        with self._mapped("retire a CIK of", sn, *(r.cik.reveal() for r in updated)):
            self._backend.set_password(service, sn, retirement.encode(updated))
        return len(updated) - len(kept)

    def delete(self, vendor: str, model: str, sn: str) -> bool:
        """Delete the CIK of ``sn`` and any unverified answer; False if there was no CIK."""
        self._delete(self.service(vendor, model) + UNVERIFIED, sn)
        return self._delete(self.service(vendor, model), sn)

    def _delete(self, service: str, sn: str) -> bool:
        with self._mapped("delete the CIK of", sn):
            try:
                self._backend.delete_password(service, sn)
            except self._missing:
                if self._backend.get_password(service, sn) is None:
                    return False
                raise
        log.debug("deleted the CIK of %s from %s", sn, service)
        return True

    @contextlib.contextmanager
    def _mapped(self, action: str, sn: str, *hidden: str) -> Iterator[None]:
        """One backend call at a time (the daemon's writer thread stages CIKs while its
        main thread reads them), its errors as KeystoreError, which quotes none of ``hidden``."""
        try:
            with self._lock:
                yield
        except self._errors as exc:
            detail = f"{type(exc).__name__}: {exc}"
            for secret in hidden:
                if secret:
                    detail = detail.replace(secret, "<secret>")
            raise KeystoreError(f"cannot {action} serial {sn!r}: {detail}") from exc
