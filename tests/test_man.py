"""The man pages: each renders without a warning and keeps up with the code."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.config import reload
from gatewayd.config.schema import SECTIONS
from gatewayd.ctl.main import parser

REPO = Path(__file__).resolve().parent.parent
MAN = REPO / "man"
PAGES = ("gatewayd.8", "gatewayctl.8", "gatewayd.toml.5")


def source(page: str) -> str:
    return (MAN / f"{page}.rst").read_text(encoding="utf-8")


def render(page: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAN / "render.py"), str(MAN / f"{page}.rst"), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_unit_names_exactly_these_pages() -> None:
    unit = (REPO / "systemd" / "gatewayd.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("Documentation=")]
    named = re.findall(r"man:([\w.]+)\((\d)\)", line)
    assert sorted(f"{name}.{section}" for name, section in named) == sorted(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_a_page_renders_without_warnings(page: str, tmp_path: Path) -> None:
    target = tmp_path / page
    done = render(page, target)
    assert (done.returncode, done.stderr) == (0, "")
    text = target.read_text()
    assert text.startswith('.\\" Man page generated from reStructuredText')
    name, section = page.rsplit(".", 1)
    title = rf'^\.TH "?{re.escape(name)}"? "?{section}"?'
    assert re.search(title, text, re.MULTILINE | re.IGNORECASE)
    if shutil.which("man") is None:
        pytest.skip("needs man (package man-db) to check the roff")
    shown = subprocess.run(
        ["man", "--warnings", "-l", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    assert (shown.returncode, shown.stderr) == (0, "")
    assert name in shown.stdout


def test_a_broken_page_fails_the_build(tmp_path: Path) -> None:
    broken = tmp_path / "broken.8.rst"
    broken.write_text("=====\nbroken\n=====\n\n:Manual section: 8\n")
    done = subprocess.run(
        [sys.executable, str(MAN / "render.py"), str(broken), str(tmp_path / "broken.8")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Title overline too short" in done.stderr


def test_the_config_page_documents_every_key_under_its_section() -> None:
    text = source("gatewayd.toml.5")
    parts = re.split(r"^\[(\w+)\]\n=+\n", text, flags=re.MULTILINE)
    documented = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert set(documented) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        for field in (f.name for f in dataclasses.fields(cls)):
            assert re.search(rf"^``{field}`` = ", documented[name], re.MULTILINE), (
                f"{name}.{field} is not in gatewayd.toml(5)"
            )
    for key in reload.LIVE:
        section, field = key.split(".")
        entry = documented[section].split(f"``{field}`` = ", 1)[1].split("\n", 1)[0]
        assert "reloadable" in entry, f"{key} is reloadable but not marked so"


def test_the_gatewayctl_page_has_every_command() -> None:
    text = source("gatewayctl.8")
    subparsers = parser()._subparsers
    assert subparsers is not None
    (commands,) = [a for a in subparsers._group_actions if a.choices]
    assert isinstance(commands.choices, dict)
    for command in commands.choices:
        assert f"**gatewayctl** [**--config** *PATH*] **{command}**" in text
        assert re.search(rf"^\*\*{re.escape(command)}\*\*", text, re.MULTILINE)


def test_the_gatewayd_page_lists_the_reloadable_keys() -> None:
    text = source("gatewayd.8")
    signals = text.split("**SIGHUP**", 1)[1].split("SYSTEMD\n", 1)[0]
    assert set(re.findall(r"``(\w+\.\w+)``", signals)) == reload.LIVE
