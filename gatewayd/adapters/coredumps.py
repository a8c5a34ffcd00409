"""Core dumps turned off: a core file of gatewayd would hold the CIKs in its memory.

``prctl(PR_SET_DUMPABLE, 0)`` makes the kernel write no core file of the
process and keeps other processes of the same user from attaching to it
(ptrace) or reading its memory through ``/proc``.
"""

from __future__ import annotations

import ctypes
from typing import Final

_PR_SET_DUMPABLE: Final = 4


def no_core_dumps() -> bool:
    """Make this process not dumpable (no core file holds its secrets); False if it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
