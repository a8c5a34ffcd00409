"""The Debian packaging agrees with the tree it packages (the .deb itself: test_deb.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import gatewayd

REPO = Path(__file__).resolve().parent.parent
DEBIAN = REPO / "debian"


def test_one_version_everywhere() -> None:
    changelog = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.fullmatch(r"gatewayd \(([^)]+)\) \w+; urgency=\w+", changelog)
    assert match is not None
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert match.group(1) == project["version"] == gatewayd.__version__


def test_the_package_depends_on_debian_packages_only() -> None:
    control = (DEBIAN / "control").read_text()
    depends = control.split("\nDepends:\n", 1)[1].split("\nRecommends:", 1)[0]
    names = {line.strip().rstrip(",") for line in depends.splitlines()}
    assert names == {
        "python3-cryptography",
        "python3-keyring",
        "python3-paho-mqtt",
        "python3-requests",
        "python3-systemd",
        "${misc:Depends}",
        "${python3:Depends}",
    }
    assert "\nRecommends:\n mosquitto,\n" in control
    assert "\nArchitecture: all\n" in control


def test_the_unit_and_sysusers_file_are_the_trees_own() -> None:
    for name in ("gatewayd.service", "gatewayd.sysusers"):
        link = DEBIAN / name
        assert link.is_symlink()
        assert link.resolve() == REPO / "systemd" / name


def test_purge_never_deletes_the_state_folder() -> None:
    postrm = (DEBIAN / "gatewayd.postrm").read_text()
    assert "#DEBHELPER#" in postrm
    assert not re.search(r"\brm\b", postrm)
    assert "/var/lib/gatewayd" in postrm
