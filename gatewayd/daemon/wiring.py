"""The daemon's parts as the configuration asks for them: engine settings, keystore,
vendor client, broker password. gatewayctl builds the same keystore and vendor
client from here.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from gatewayd.adapters import redaction
from gatewayd.adapters.disk import Volumes
from gatewayd.adapters.keystore import Keystore, load_key, open_backend
from gatewayd.adapters.statedb import StateDB
from gatewayd.config.schema import Config
from gatewayd.core.actions import Reenable
from gatewayd.core.errors import ConfigError, ExositeError, StateError
from gatewayd.core.events import ReenableAnswered
from gatewayd.core.model import Settings
from gatewayd.core.secret import Secret
from gatewayd.daemon.writer import Flushed, Writer

if TYPE_CHECKING:
    from gatewayd.adapters.vendor import VendorApiError, VendorClient

log = logging.getLogger(__name__)

MQTT_PASSWORD_CREDENTIAL: Final = "gatewayd-mqtt-password"  # noqa: S105 (a credential's name)
VENDOR_TOKEN_CREDENTIAL: Final = "gatewayd-vendor-token"  # noqa: S105 (a credential's name)


def engine_settings(config: Config, *, vendor_token: bool) -> Settings:
    """The engine's settings; ``vendor_token``: one is configured (offered CIKs may then
    be adopted, once proved to be their serial's)."""
    return Settings(
        vendor=config.exosite.vendor,
        model=config.exosite.model,
        models=frozenset(config.exosite.models),
        rejected_retry_after=config.nodes.rejected_retry_after,
        api=config.exosite.api,
        auto_reenable=config.exosite.auto_reenable,
        backoff_base=config.exosite.retry_base,
        backoff_cap=config.exosite.retry_cap,
        max_pending=config.nodes.max_pending,
        check_interval=config.nodes.check_interval,
        adopt=vendor_token,
    )


def credential(name: str) -> Path | None:
    """The file of the systemd credential ``name`` (LoadCredential=), if the unit gave one."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder, name)
    return path if path.exists() else None


def check_exosite(config: Config) -> None:
    """Fail before READY=1 where the first activation would: a CA file that cannot be
    read is a configuration error, a proxy variable that is no URL an error of the
    environment (ExositeError, never quoting it: it may hold a password). requests,
    which reads the same variables for each request, is not loaded before READY=1."""
    ca_file = config.exosite.ca_file
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                config.source, "exosite.ca_file", f"a readable CA file ({exc})"
            ) from exc
    scheme = urlsplit(config.exosite.url).scheme.lower()
    for name, value in os.environ.items():
        lowered = name.lower()
        if lowered in {f"{scheme}_proxy", "all_proxy"} and value and not _proxy_url(value):
            raise ExositeError(f"{lowered} in the environment is not a proxy URL (not shown)")


def _proxy_url(value: str) -> bool:
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        parts.port  # noqa: B018 (a port that is no number raises ValueError)
    except ValueError:
        return False
    return bool(parts.hostname)


def reenabler(
    vendor: VendorClient | None, answer: Callable[[ReenableAnswered], None]
) -> Callable[[Reenable], None]:
    """How the daemon re-enables a serial: through the vendor API, on a thread of its own,
    ``answer`` given the outcome; without a vendor token, at once with an error."""
    if vendor is None:
        return lambda action: answer(ReenableAnswered(action.sn, "no vendor token is configured"))

    def reenable(action: Reenable) -> None:
        sn = action.sn

        def done(error: VendorApiError | None) -> None:
            if error is None:
                answer(ReenableAnswered(sn))
            else:
                answer(ReenableAnswered(sn, str(error), maybe_done=error.maybe_done))

        vendor.reenable_in_background(action.model, sn, done)

    return reenable


def open_keystore(config: Config) -> Keystore:
    key = load_key(config.keyring.key_file, os.environ.get("CREDENTIALS_DIRECTORY"))
    backend = open_backend(config.keyring.backend, config.gateway.state_dir / "keyring", key)
    return Keystore(backend, config.keyring.service)


def writer(
    config: Config, keystore: Keystore, state: StateDB, done: Callable[[Flushed], None]
) -> Writer:
    """The writer thread, flushing the file systems of the keystore and the state database
    (whose commits it makes durable from now on)."""
    folders = [config.gateway.state_dir]
    if keystore.folder is not None:
        folders.insert(0, keystore.folder)
    try:
        volumes = Volumes(folders)
    except OSError as exc:
        raise StateError(f"cannot open {exc.filename}: {exc.strerror}") from exc
    state.defer_sync()
    return Writer(keystore, volumes, done)


def vendor_client(config: Config, keystore: Keystore) -> VendorClient | None:
    """gatewayctl's vendor API client; None without a token. The token is read where it is
    (its file, the credential, the keyring), never written: the keyring is the daemon's."""
    return vendor_api(config, vendor_token(config, keystore, keep=False))


def vendor_api(config: Config, token: Secret | None) -> VendorClient | None:
    """The vendor API client of ``token``; None without one."""
    if token is None:
        return None
    from gatewayd.adapters.vendor import VendorClient  # noqa: PLC0415 (requests, only where it is used)

    return VendorClient(config.exosite, token)


def vendor_token(config: Config, keystore: Keystore, *, keep: bool = True) -> Secret | None:
    """The vendor API token from its file or credential (with ``keep``, the daemon's, moved
    into the keyring), else from the keyring; None if there is none (an error if
    exosite.auto_reenable needs one)."""
    exosite = config.exosite
    path = exosite.vendor_token_file
    if path is None:
        path = credential(VENDOR_TOKEN_CREDENTIAL)
    token: Secret | None
    if path is not None:
        try:
            token = Secret(path.read_text(encoding="utf-8").strip())
            redaction.remember(token)
        except OSError as exc:
            key = "exosite.vendor_token_file"
            raise ConfigError(config.source, key, f"a readable file ({exc.strerror})") from exc
        if keep:
            keystore.store_token(exosite.vendor, token)
    else:
        token = keystore.load_token(exosite.vendor)
        if token is not None:
            redaction.remember(token)
    if token is None and exosite.auto_reenable:
        raise ConfigError(
            config.source,
            "exosite.auto_reenable",
            "a vendor token: set exosite.vendor_token_file, or the systemd credential "
            f"{VENDOR_TOKEN_CREDENTIAL}",
        )
    return token


def read_password(config: Config) -> Secret | None:
    """The broker password, from mqtt.password_file or the systemd credential.

    A password is never sent in plain text to a broker on another machine,
    unless mqtt.allow_insecure says so; then it is warned about at every start.
    """
    mqtt = config.mqtt
    if mqtt.username is None:
        return None
    path = mqtt.password_file
    if path is None:
        path = credential(MQTT_PASSWORD_CREDENTIAL)
    if path is None:
        return None
    try:
        password = Secret(path.read_text(encoding="utf-8").strip())
        redaction.remember(password)
    except OSError as exc:
        raise ConfigError(
            config.source, "mqtt.password_file", f"a readable file ({exc.strerror})"
        ) from exc
    if mqtt.tls is None and not mqtt.loopback:
        if not mqtt.allow_insecure:
            raise ConfigError(
                config.source,
                "mqtt.tls",
                f"required to send the broker password to {mqtt.host}, which is not this "
                "machine: configure [mqtt.tls], or set mqtt.allow_insecure = true to send "
                "it in plain text",
            )
        log.warning(
            "mqtt.allow_insecure: the broker password goes to %s in plain text, without TLS",
            mqtt.host,
        )
    return password


def tls_context(config: Config, *, answers: bool = False) -> ssl.SSLContext | None:
    """For [mqtt.tls]: TLS 1.2 or newer, the broker's certificate and name checked, and
    the client certificate if one is configured. None without [mqtt.tls].

    ``answers``: the answers connection's own context, with its own client certificate
    (and key, in the same file); None if it has none (it uses the other connection's)."""
    tls = config.mqtt.tls
    if tls is None:
        return None
    cert_key, cert_file, key_file = "mqtt.tls.cert_file", tls.cert_file, tls.key_file
    if answers:
        if tls.answers_cert_file is None:
            return None
        cert_key, cert_file, key_file = "mqtt.tls.answers_cert_file", tls.answers_cert_file, None
    try:
        context = ssl.create_default_context(
            cafile=None if tls.ca_file is None else str(tls.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(config.source, "mqtt.tls.ca_file", f"a readable CA file ({exc})") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        key = None if key_file is None else str(key_file)
        try:
            context.load_cert_chain(str(cert_file), key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                config.source, cert_key, f"a readable certificate and key ({exc})"
            ) from exc
    return context
