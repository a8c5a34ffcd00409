"""Where activation requests go: the URL's host and port, its TLS settings, and the proxy.

A proxy is taken from the environment once, as curl and requests read it
(``https_proxy``, ``http_proxy``, ``no_proxy``, in lower or upper case).
Nothing here opens a connection (:mod:`gatewayd.adapters.transport` does).
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from gatewayd.config.load import ExositeConfig
from gatewayd.core.errors import ExositeError

ACTIVATE_PATH: Final = "/provision/activate"


def activation_url(config: ExositeConfig) -> str:
    return config.url.rstrip("/") + ACTIVATE_PATH


def activation_endpoint(config: ExositeConfig) -> Endpoint:
    """Where activations go, with the TLS settings and the proxy from the environment."""
    try:
        return Endpoint.from_url(activation_url(config), config.ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ExositeError(f"cannot set up requests to {config.url}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """A proxy from its URL; an error never quotes the URL, which may hold a password."""
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid proxy URL ({exc})") from None
        if parts.hostname is None:
            raise ValueError("the proxy URL names no host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        return cls(parts.hostname, port or 80, authorization)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the requests go: a URL, how it is reached, and its TLS settings."""

    scheme: str
    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None
    proxy: Proxy | None

    @classmethod
    def from_url(
        cls, url: str, ca_file: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Endpoint:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"} or parts.hostname is None:
            raise ValueError(f"not an http or https URL: {url!r}")
        tls = None
        if scheme == "https":
            tls = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname, port, parts.path or "/", tls, _proxy(parts, environ))

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _proxy(parts: SplitResult, environ: Mapping[str, str] | None) -> Proxy | None:
    found: dict[str, str] = {}
    for name, value in (os.environ if environ is None else environ).items():
        lowered = name.lower()
        if not value or not lowered.endswith("_proxy"):
            continue
        scheme = lowered.removesuffix("_proxy")
        if name == lowered or scheme not in found:  # the lower-case name wins, as in curl
            found[scheme] = value
    url = found.get(parts.scheme.lower())
    host = parts.hostname or ""
    if not url or _bypassed(host, parts.port, found.get("no", "")):
        return None
    try:
        return Proxy.from_url(url)
    except ValueError as exc:
        raise ValueError(f"{parts.scheme.lower()}_proxy in the environment: {exc}") from None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``*``, or names and ``name:port``, commas between) spares the host."""
    host = host.lower()
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        if entry == "*":
            return True
        name, _, entry_port = entry.partition(":")
        name = name.lstrip(".")
        if not name or (entry_port and entry_port != str(port)):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False
