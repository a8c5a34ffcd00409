"""The sections of the configuration file: one frozen dataclass each.

Each section checks, and where needed normalises, its own values in
``__post_init__`` (a path string becomes a :class:`~pathlib.Path`, an integer
timeout a float); a problem is a :class:`~gatewayd.core.errors.ConfigError`
naming the dotted key. :mod:`gatewayd.config.load` maps the TOML file onto them.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

from gatewayd.config.validation import (
    Section,
    is_client_id,
    is_dotted_name,
    is_host,
    is_loopback,
    is_name,
    is_printable_nonempty,
    is_topic_prefix,
)
from gatewayd.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
EXOSITE_APIS: Final = ("onep", "murano")
ONEP_URL: Final = "https://m2.exosite.com"
SOCKET_PATH_MAX: Final = 107
"""The longest path a Unix socket can be bound to on Linux."""

_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SESSION_EXPIRY_MAX: Final = 2**32 - 1


@dataclass(frozen=True, slots=True)
class GatewayConfig(Section):
    _section: ClassVar[str] = "gateway"

    id: str = field(default_factory=socket.gethostname)
    state_dir: Path = Path("/var/lib/gatewayd")
    log_level: str = "info"
    control_socket: Path = Path("/run/gatewayd/control.sock")

    def __post_init__(self) -> None:
        self._str("id", "1 to 64 letters, digits, '.', '_' or '-'", _ID.fullmatch)
        self._path("state_dir")
        self._choice("log_level", LOG_LEVELS)
        self._path("control_socket")
        if len(bytes(self.control_socket)) > SOCKET_PATH_MAX:
            self._fail("control_socket", f"a path of at most {SOCKET_PATH_MAX} bytes")


@dataclass(frozen=True, slots=True)
class TlsConfig(Section):
    """``[mqtt.tls]``: its presence turns TLS on (1.2 or newer, the server's name checked)."""

    _section: ClassVar[str] = "mqtt.tls"

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    answers_cert_file: Path | None = None
    """The answers connection's own certificate and its key, in one PEM file."""

    def __post_init__(self) -> None:
        for key in ("ca_file", "cert_file", "key_file", "answers_cert_file"):
            self._path(key, optional=True)
        if self.key_file is not None and self.cert_file is None:
            self._error("key_file", "needs mqtt.tls.cert_file (the client certificate) as well")


@dataclass(frozen=True, slots=True)
class MqttConfig(Section):
    _section: ClassVar[str] = "mqtt"

    host: str = "localhost"
    port: int = 1883
    client_id: str = ""
    topic_prefix: str = "gatewayd"
    protocol: int = 5
    keepalive: int = 60
    session_expiry: int = 86400
    username: str | None = None
    answers_username: str | None = None  # the answers connection's, if not username
    password_file: Path | None = None
    allow_insecure: bool = False
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        self._str("host", "a host name or IP address, without scheme or port", is_host)
        self._int("port", 1, 65535)
        self._str("client_id", "at most 128 printable characters without spaces", is_client_id)
        self._str(
            "topic_prefix",
            "a non-empty MQTT topic without '+', '#', a leading '$' or '/', "
            "a trailing '/' or an empty level",
            is_topic_prefix,
        )
        self._choice("protocol", (5, 4), "5 (MQTT 5) or 4 (MQTT 3.1.1)")
        self._int("keepalive", 5, 3600, "an integer number of seconds from 5 to 3600")
        self._int(
            "session_expiry",
            0,
            _SESSION_EXPIRY_MAX,
            "an integer number of seconds from 0 to 4294967295",
        )
        self._str("username", "a non-empty string", is_printable_nonempty, optional=True)
        self._str("answers_username", "a non-empty string", is_printable_nonempty, optional=True)
        self._path("password_file", optional=True)
        for key in ("answers_username", "password_file"):
            if getattr(self, key) is not None and self.username is None:
                self._error(key, "needs mqtt.username to be set as well")
        self._choice("allow_insecure", (True, False), "true or false")
        tls: object = self.tls
        if isinstance(tls, dict):
            self._set("tls", _build_table(TlsConfig, tls))
        elif tls is not None and not isinstance(tls, TlsConfig):
            self._fail("tls", "a table, [mqtt.tls]")

    @property
    def loopback(self) -> bool:
        """The broker is on this machine: nothing sent to it crosses a network."""
        return is_loopback(self.host)


@dataclass(frozen=True, slots=True)
class ExositeConfig(Section):
    _section: ClassVar[str] = "exosite"

    vendor: str
    model: str
    api: str = "onep"
    url: str = ONEP_URL
    models: tuple[str, ...] = ()
    timeout: float = 10.0
    max_concurrent: int = 4
    max_rate: float = 5.0
    retry_base: float = 5.0
    retry_cap: float = 900.0
    ca_file: Path | None = None
    vendor_token_file: Path | None = None
    auto_reenable: bool = False

    def __post_init__(self) -> None:
        self._str("vendor", "a non-empty name without '/'", is_name)
        self._str("model", "a non-empty name without '/'", is_name)
        self._choice("api", EXOSITE_APIS)
        self._check_url()
        self._check_models()
        self._float(
            "timeout", "a number of seconds greater than 0, at most 300", lambda v: 0 < v <= 300
        )
        self._int("max_concurrent", 1, 64)
        self._float("max_rate", "a number of requests per second greater than 0", lambda v: v > 0)
        self._float("retry_base", "a number of seconds greater than 0", lambda v: v > 0)
        self._float(
            "retry_cap", "a number of seconds, at least retry_base", lambda v: v >= self.retry_base
        )
        self._path("ca_file", optional=True)
        self._path("vendor_token_file", optional=True)
        self._choice("auto_reenable", (True, False), "true or false")

    def _check_url(self) -> None:
        expected = "an http:// or https:// URL of a host, with no path, query or user name"
        url: object = self.url
        if not isinstance(url, str) or not url.isprintable() or " " in url:
            self._fail("url", expected)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            self._fail("url", expected)
        if parts.username is not None:
            self._error("url", f"expected {expected}, got one with a user name (not shown)")
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or parts.path not in {"", "/"}
            or "?" in url
            or "#" in url
            or port == 0
        ):
            self._fail("url", expected)
        if self.api == "murano" and parts.hostname == urlsplit(ONEP_URL).hostname:
            self._error(
                "url",
                "required with api = 'murano': expected the product's own URL, "
                f"https://<product_id>.m2.exosite.io, got the One Platform URL {url!r}",
            )
        self._set("url", url.rstrip("/"))

    def _check_models(self) -> None:
        models = self.models
        if not isinstance(models, list | tuple) or not all(
            isinstance(m, str) and is_name(m) for m in models
        ):
            self._fail("models", "a list of non-empty names without '/'")
        self._set("models", tuple(dict.fromkeys([self.model, *models])))


@dataclass(frozen=True, slots=True)
class KeyringConfig(Section):
    _section: ClassVar[str] = "keyring"

    backend: str = "gatewayd.adapters.keystore.FileKeyring"
    service: str = "gatewayd"
    key_file: Path | None = None

    def __post_init__(self) -> None:
        self._str("backend", "a dotted 'module.Class' name", is_dotted_name)
        self._str("service", "a non-empty name without '/'", is_name)
        self._path("key_file", optional=True)


@dataclass(frozen=True, slots=True)
class NodesConfig(Section):
    _section: ClassVar[str] = "nodes"

    sn_pattern: re.Pattern[str] = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
    rejected_retry_after: float = 300.0
    announce_rate: float = 1.0
    announce_burst: int = 5
    max_pending: int = 1000
    check_interval: float = 300.0

    def __post_init__(self) -> None:
        pattern: object = self.sn_pattern
        if isinstance(pattern, str):
            try:
                self._set("sn_pattern", re.compile(pattern))
            except re.error as exc:
                self._fail("sn_pattern", f"a regular expression ({exc.msg} at position {exc.pos})")
        elif not isinstance(pattern, re.Pattern) or not isinstance(pattern.pattern, str):
            self._fail("sn_pattern", "a regular expression, as a string")
        self._float("rejected_retry_after", "a number of seconds, at least 0", lambda v: v >= 0)
        self._float("announce_rate", "a number of announces per second greater than 0", _positive)
        self._int("announce_burst", 1, 1000)
        self._int("max_pending", 1, 1_000_000)
        self._float("check_interval", "a number of seconds greater than 0", _positive)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file. ``mqtt.client_id`` is resolved here, from ``gateway.id``."""

    source: str
    gateway: GatewayConfig
    mqtt: MqttConfig
    exosite: ExositeConfig
    keyring: KeyringConfig
    nodes: NodesConfig

    def __post_init__(self) -> None:
        if not self.mqtt.client_id:
            resolved = dataclasses.replace(self.mqtt, client_id=f"gatewayd-{self.gateway.id}")
            object.__setattr__(self, "mqtt", resolved)


_S = TypeVar("_S", bound=Section)

SECTIONS: Final[Mapping[str, type[Section]]] = MappingProxyType(
    {
        "gateway": GatewayConfig,
        "mqtt": MqttConfig,
        "exosite": ExositeConfig,
        "keyring": KeyringConfig,
        "nodes": NodesConfig,
    }
)


def _keys(cls: type[Section]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _positive(value: float) -> bool:
    return value > 0


def _build_table(cls: type[_S], table: dict[str, Any]) -> _S:
    """A nested table such as [mqtt.tls]: every key known, then the section's own checks."""
    known = _keys(cls)
    for key in table:
        if key not in known:
            raise ConfigError(
                cls.__name__,
                f"{cls._section}.{key}",
                f"unknown key; [{cls._section}] knows: " + ", ".join(known),
            )
    return cls(**table)
