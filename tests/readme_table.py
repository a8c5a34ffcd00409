"""Rewrite the README's copy of the node state machine's table from
``gatewayd.core.transitions`` (``make readme-table``); test_engine checks the copy."""

from __future__ import annotations

from pathlib import Path

from gatewayd.core.transitions import as_table

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| state | trigger | next state |"


def main() -> None:
    text = README.read_text()
    start = text.index(HEADER)
    end = text.index("\n\n", start)
    README.write_text(text[:start] + as_table().rstrip("\n") + text[end:])


if __name__ == "__main__":
    main()
