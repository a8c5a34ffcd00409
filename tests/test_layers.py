"""The layers of the package hold: the import-linter contracts of ``make lint`` keep them,
and fail when one is broken; the core imports itself and, of the standard library, only
modules that do no I/O, read no clock and keep no process state."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "gatewayd" / "core"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


CORE_MAY_IMPORT = frozenset(
    {
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "heapq",
        "json",
        "math",
        "re",
        "typing",
        # for its level numbers only, which the Log action carries to the daemon's logger
        # (see test_the_core_uses_logging_for_its_level_numbers_only)
        "logging",
    }
)
"""The standard library modules the core may import: none does I/O, reads a clock or keeps
state the core could see (``re`` caches what it compiles, unseen). A module is added here
only on those terms; the clock, randomness and files reach the core as arguments."""


def imported(path: Path, package: str = "") -> set[str]:
    """The modules ``path`` imports; a relative import is made absolute in ``package``
    (by default the package of ``path`` in this checkout)."""
    if not package:
        package = ".".join(path.parent.relative_to(REPO).parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            parts = [*base, node.module] if node.level else [node.module]
            module = ".".join(part for part in parts if part)
            names.add(module)
            if not node.module or module == "gatewayd":  # from gatewayd import core, ...
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def outside_the_allow_list(core: Path) -> list[str]:
    """Each import of a module of ``core`` that is neither the core nor allowed."""
    found = []
    for module in sorted(core.glob("*.py")):
        for name in sorted(imported(module, "gatewayd.core")):
            inside = name == "gatewayd.core" or name.startswith("gatewayd.core.")
            if not inside and name not in CORE_MAY_IMPORT:
                found.append(f"{module.name} imports {name}")
    return found


def test_the_core_imports_itself_and_the_allowed_standard_modules_only() -> None:
    assert len(list(CORE.glob("*.py"))) > 5
    assert outside_the_allow_list(CORE) == []
    assert all(name.partition(".")[0] in sys.stdlib_module_names for name in CORE_MAY_IMPORT)


def check_logging_levels_only(core: Path) -> None:
    levels = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    for module in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.ImportFrom) and node.module == "logging":
                pytest.fail(f"{module.name}: from logging import ...; use logging.<LEVEL>")
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "logging":
                assert node.attr in levels, f"{module.name} uses logging.{node.attr}"


def test_the_core_uses_logging_for_its_level_numbers_only() -> None:
    """The core logs by returning Log actions; it holds no logger of its own."""
    check_logging_levels_only(CORE)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed here (pip install -e '.[test]')")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(
        REPO / "gatewayd", tmp_path / "gatewayd", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_are_kept(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


PURE: Final = "keeps process state KEPT"


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/engine.py", "from gatewayd.adapters import mqtt", "above core KEPT"),
        ("core/engine.py", "import requests", "no third-party library KEPT"),
        ("core/timers.py", "import os", PURE),
        ("core/timers.py", "import time", PURE),
        ("core/limits.py", "from threading import Lock", PURE),
        ("core/secret.py", "import ctypes", PURE),
        ("core/protocol.py", "import socket", PURE),
        ("core/protocol.py", "from urllib.parse import quote", PURE),
        ("core/acks.py", "import random", PURE),
        ("core/model.py", "import sqlite3", PURE),
        ("core/events.py", "from datetime import datetime", PURE),
        ("adapters/statedb.py", "from gatewayd.daemon import wiring", "above core KEPT"),
        ("config/load.py", "from gatewayd.adapters import logs", "above core KEPT"),
        ("daemon/loop.py", "from gatewayd.ctl import main", "above core KEPT"),
        ("sim/demo.py", "from gatewayd.daemon import loop", "never imports it KEPT"),
    ],
)
def test_breaking_a_layer_fails_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = copy_of_the_package(tmp_path)
    path = root / "gatewayd" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert contract.replace("KEPT", "BROKEN") in result.stdout
    if module.startswith("core/"):  # the allow-list catches it too
        assert outside_the_allow_list(root / "gatewayd" / "core") != []


@pytest.mark.parametrize(
    "line",
    [
        "import logging.handlers",
        "from logging.handlers import RotatingFileHandler",
        "import os.path",
        "from . import model, secret\nfrom .. import adapters",
        "import pickle",
        "import itertools",
    ],
)
def test_the_allow_list_catches_what_import_linter_cannot_name(tmp_path: Path, line: str) -> None:
    """import-linter forbids top-level modules only; the allow-list names submodules too,
    and every module that is not on it."""
    core = tmp_path / "core"
    shutil.copytree(CORE, core, ignore=shutil.ignore_patterns("__pycache__"))
    (core / "timers.py").write_text((core / "timers.py").read_text() + f"\n{line}\n")
    assert outside_the_allow_list(core) != []


def test_the_core_logs_through_actions_not_loggers(tmp_path: Path) -> None:
    core = tmp_path / "core"
    shutil.copytree(CORE, core, ignore=shutil.ignore_patterns("__pycache__"))
    text = (core / "replies.py").read_text()
    (core / "replies.py").write_text(text + "\nlog = logging.getLogger(__name__)\n")
    with pytest.raises(AssertionError, match=r"logging\.getLogger"):
        check_logging_levels_only(core)


def test_the_readme_layout_names_every_module_and_folder_of_the_package() -> None:
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    named = set(re.findall(r"^(gatewayd/\S*)", layout, flags=re.MULTILINE))
    package = REPO / "gatewayd"
    tree = {"gatewayd/sim/"}
    for path in package.rglob("*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[1] == "sim" or path.name == "__init__.py":
            continue
        tree.add(str(relative))
    tree |= {f"gatewayd/{folder.name}/" for folder in package.iterdir() if folder.is_dir()}
    tree.discard("gatewayd/__pycache__/")
    assert named == tree


def test_only_the_simulator_speaks_http_by_hand() -> None:
    """Every request gatewayd makes goes through requests (gatewayd.adapters.http)."""
    package = REPO / "gatewayd"
    users = {
        str(path.relative_to(REPO))
        for path in package.rglob("*.py")
        if any(name.startswith("http.client") for name in imported(path))
    }
    assert users
    assert all(user.startswith("gatewayd/sim/") for user in users), users
