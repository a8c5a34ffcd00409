"""Render a man page from its reStructuredText source: render.py SOURCE TARGET.

Any docutils warning fails the build (exit 1), so a page never ships broken.
"""

from __future__ import annotations

import sys

from docutils.core import publish_file
from docutils.utils import SystemMessage


def main(source: str, target: str) -> int:
    try:
        publish_file(
            source_path=source,
            destination_path=target,
            writer_name="manpage",
            settings_overrides={"halt_level": 2, "report_level": 2},
        )
    except SystemMessage as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
