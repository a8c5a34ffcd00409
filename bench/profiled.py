"""gatewayd with cProfile on every thread, for bench/cpu.py --cprofile.

    PROFILE_DIR=DIR python bench/profiled.py --config PATH

SIGUSR1 forgets what was profiled so far (the start); SIGUSR2 writes each
thread's profile to ``DIR/<thread name>-<n>.prof`` (pstats can read and add
them) and then the file ``DIR/done``. cProfile times wall clock, a thread's
waits for the GIL included: its call counts are exact, its times are not CPU.
"""

from __future__ import annotations

import cProfile
import itertools
import marshal
import os
import runpy
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

OUT = Path(os.environ["PROFILE_DIR"])
_profiles: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()


def _hook(_frame: FrameType, _event: str, _arg: Any) -> None:  # noqa: ANN401 (sys.setprofile's)
    """A new thread's first event: it profiles itself from now on."""
    profile = cProfile.Profile()
    with _lock:
        _profiles.append((threading.current_thread().name, profile))
    profile.enable()


def _clear(_signum: int, _frame: FrameType | None) -> None:
    with _lock:
        for _, profile in _profiles:
            profile.clear()


def _dump(_signum: int, _frame: FrameType | None) -> None:
    with _lock:
        taken = list(_profiles)
    for number, (name, profile) in zip(itertools.count(), taken, strict=False):
        profile.snapshot_stats()  # what pstats reads: .stats
        (OUT / f"{name}-{number}.prof").write_bytes(marshal.dumps(profile.stats))
    (OUT / "done").touch()


def main() -> None:
    threading.setprofile(_hook)
    first = cProfile.Profile()
    _profiles.append(("MainThread", first))
    signal.signal(signal.SIGUSR1, _clear)
    signal.signal(signal.SIGUSR2, _dump)
    sys.argv = ["gatewayd", *sys.argv[1:]]
    first.enable()
    runpy.run_module("gatewayd", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
