"""What a reload (SIGHUP) may change while gatewayd runs, and what needs a restart.

:func:`plan` compares the running configuration with the file as it is now.
Keys in ``LIVE`` take their new value; every other change is reported as
needing a restart and the running value is kept, so that the daemon goes on
with one consistent configuration either way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from gatewayd.config.schema import SECTIONS, Config

LIVE: Final = frozenset(
    {
        "gateway.log_level",
        "exosite.models",
        "exosite.timeout",
        "exosite.max_rate",
        "exosite.retry_base",
        "exosite.retry_cap",
        "nodes.sn_pattern",
        "nodes.rejected_retry_after",
        "nodes.check_interval",
    }
)
"""The keys a reload applies; a change to any other key needs a restart."""


@dataclass(frozen=True, slots=True)
class Plan:
    config: Config
    """The running configuration with the live changes applied."""
    applied: tuple[str, ...]
    restart: tuple[str, ...]
    """Changed keys whose old value stays in force until gatewayd restarts."""


def plan(running: Config, loaded: Config) -> Plan:
    applied: list[str] = []
    restart: list[str] = []
    sections: dict[str, object] = {}
    for name in SECTIONS:
        before, after = getattr(running, name), getattr(loaded, name)
        changes = {}
        for field in dataclasses.fields(before):
            key = f"{name}.{field.name}"
            value = getattr(after, field.name)
            if getattr(before, field.name) == value:
                continue
            if key in LIVE:
                changes[field.name] = value
                applied.append(key)
            else:
                restart.append(key)
        sections[name] = dataclasses.replace(before, **changes) if changes else before
    config = dataclasses.replace(running, **sections)  # type: ignore[arg-type]
    return Plan(config, tuple(applied), tuple(restart))
