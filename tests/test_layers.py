"""The layers of the package hold: the import-linter contract of ``make lint`` keeps them,
and fails when one is broken; the core imports the standard library and itself only."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "gatewayd" / "core"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "gatewayd":
                names.update(f"gatewayd.{alias.name}" for alias in node.names)
    return names


def test_the_core_imports_the_standard_library_and_itself_only() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        for name in imported(module):
            top = name.partition(".")[0]
            inside = name == "gatewayd.core" or name.startswith("gatewayd.core.")
            assert inside or top in sys.stdlib_module_names, f"{module.name} imports {name}"


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
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/engine.py", "from gatewayd.adapters import mqtt", "above core KEPT"),
        ("core/engine.py", "import requests", "no third-party library KEPT"),
        ("adapters/state.py", "from gatewayd.daemon import wiring", "above core KEPT"),
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
