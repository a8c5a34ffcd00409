"""Which CIK each simulated device holds now, and which device holds a given CIK.

A device's CIK is the one its last activation issued, until the device is
re-enabled (then it has none: its next activation issues a new one) or its
CIK is regenerated (then it has one no gateway was given: the old one stops
working, as regenerating a CIK in Portals does). Exosite accepts a CIK while it
is its device's current one. The registry holds its lock around every call.
"""

from __future__ import annotations

import secrets

from gatewayd.adapters.redaction import remember_cik
from gatewayd.core.secret import Secret

Key = tuple[str, str, str]
"""(vendor, model, sn)."""


class CikBook:
    def __init__(self) -> None:
        self._current: dict[Key, str] = {}
        self._holder: dict[str, Key] = {}

    def issue(self, key: Key) -> Secret:
        """A new CIK for ``key``: it replaces any other the device had."""
        self.retire(key)
        cik = secrets.token_hex(20)
        secret = Secret(cik)
        remember_cik(secret)  # never logged, by gatewayd or the simulator
        self._current[key] = cik
        self._holder[cik] = key
        return secret

    def retire(self, key: Key) -> None:
        """The device has no CIK any more."""
        old = self._current.pop(key, None)
        if old is not None:
            del self._holder[old]

    def holder(self, cik: str) -> Key | None:
        """The device whose current CIK ``cik`` is, if any."""
        return self._holder.get(cik)
