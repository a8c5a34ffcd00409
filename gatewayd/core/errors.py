"""gatewayd's own exceptions.

Each adapter translates the errors of the library it wraps into one of these
(``raise ... from exc``), so the core only ever handles this tree::

    GatewaydError
    ├── ConfigError          the TOML file is missing, unreadable or invalid
    ├── InvalidRequest       an announce that cannot be acted on
    ├── KeystoreError        the keyring backend failed to read, write or delete
    ├── StateError           the SQLite state database failed or is too new
    ├── ExositeError         the Exosite client could not be set up
    └── MqttError            the broker link could not be set up or used

No message in this tree ever carries a CIK or another secret.
"""

from __future__ import annotations

from gatewayd.core.model import ResponseTarget


class GatewaydError(Exception):
    """Base of every error gatewayd raises on purpose."""


class ConfigError(GatewaydError):
    """The configuration is invalid: names the file, the key and what was expected."""

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {expected}")


class InvalidRequest(GatewaydError):  # noqa: N818 (named after the `invalid_request` reason)
    """An announce that cannot be acted on.

    ``sn`` is the serial taken from the topic when the topic itself is well
    formed, so that the node can still be answered on its credentials topic;
    ``response`` the announce's MQTT 5 response target, if it may be answered there.
    """

    def __init__(
        self, message: str, sn: str | None = None, response: ResponseTarget | None = None
    ) -> None:
        self.sn = sn
        self.response = response
        super().__init__(message)


class KeystoreError(GatewaydError):
    """The keyring backend could not read, write or delete a secret."""


class StateError(GatewaydError):
    """The state database could not be opened, migrated, read or written."""


class ExositeError(GatewaydError):
    """The Exosite client could not be set up."""


class MqttError(GatewaydError):
    """The broker link could not be set up or used."""
