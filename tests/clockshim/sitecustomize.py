"""Steps the wall clock of a Python process, as NTP does on a gateway without a real-time clock.

On ``PYTHONPATH`` this module is imported at start-up. ``time.time`` (and
``time.time_ns``) then return the real time plus the number of seconds in the
file named by ``$GATEWAYD_TEST_CLOCK_STEP`` (read again whenever it changes).
``time.monotonic`` is left alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_PATH = os.environ.get("GATEWAYD_TEST_CLOCK_STEP")
_real_time = time.time
_seen: list[float] = [0.0, -1.0]  # the offset, and the file's mtime it was read at


def _offset() -> float:
    assert _PATH is not None
    try:
        changed = float(Path(_PATH).stat().st_mtime_ns)
        if changed != _seen[1]:
            _seen[0] = float(Path(_PATH).read_text(encoding="ascii").strip() or 0)
            _seen[1] = changed
    except (OSError, ValueError):
        return 0.0
    return _seen[0]


def _stepped_time() -> float:
    return _real_time() + _offset()


def _stepped_time_ns() -> int:
    return int(_stepped_time() * 1e9)


if _PATH:
    time.time = _stepped_time
    time.time_ns = _stepped_time_ns
