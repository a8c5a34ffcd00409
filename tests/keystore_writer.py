"""Stores one CIK through Keystore, says so on stdout, then waits to be killed.

Reads one JSON line on stdin: ``{"folder", "key" (hex or null), "vendor",
"model", "sn", "cik"}``. Prints ``stored`` once ``Keystore.store()`` has
returned, then blocks until stdin is closed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.core.secret import Secret


def main() -> int:
    request = json.loads(sys.stdin.readline())
    key = bytes.fromhex(request["key"]) if request["key"] is not None else None
    keystore = Keystore(FileKeyring(folder=Path(request["folder"]), key=key))
    keystore.store(request["vendor"], request["model"], request["sn"], Secret(request["cik"]))
    sys.stdout.write("stored\n")
    sys.stdout.flush()
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
