"""Debian roots for the package tests: made by debootstrap once, copied fresh for each use.

The minimal bookworm and trixie roots are cached under ``$XDG_CACHE_HOME/gatewayd``;
a test gets a copy, chroots into it, installs the package named by
``$GATEWAYD_DEB`` with the root's own apt, and throws the copy away.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SUITES = {"bookworm": ("1.6.1", "3.11"), "trixie": ("2.1.0", "3.13")}
"""Each release, with the paho-mqtt and the python3 it ships."""
MIRROR = os.environ.get("GATEWAYD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_TIMEOUT = 900


def run(*argv: str, timeout: float = APT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": ROOT_PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
    )
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}\n{done.stderr}"
    return done


class Root:
    """A Debian root to chroot into."""

    def __init__(self, path: Path, suite: str) -> None:
        self.path = path
        self.suite = suite

    def __call__(self, *argv: str, timeout: float = APT_TIMEOUT) -> str:
        return run("chroot", str(self.path), *argv, timeout=timeout).stdout

    def exists(self, path: str) -> bool:
        """Whether ``path`` is there (a symbolic link counts: its target is the root's)."""
        return os.path.lexists(self.path / path.lstrip("/"))


def base_root(suite: str) -> Path:
    """A minimal root of ``suite``, made once and kept in the cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gatewayd"
    base = cache / f"{suite}-minbase"
    if not base.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f"{suite}-minbase.partial"
        shutil.rmtree(partial, ignore_errors=True)
        run("debootstrap", "--variant=minbase", suite, str(partial), MIRROR)
        partial.rename(base)
    return base


@contextlib.contextmanager
def fresh_root(suite: str, folder: Path) -> Iterator[Root]:
    """A fresh copy of the cached root of ``suite``, with /proc mounted and the host's DNS."""
    path = folder / "root"
    run("cp", "-a", str(base_root(suite)), str(path))
    shutil.copy("/etc/resolv.conf", path / "etc" / "resolv.conf")
    run("mount", "-t", "proc", "proc", str(path / "proc"))
    try:
        yield Root(path, suite)
    finally:
        if os.path.ismount(path / "proc"):
            subprocess.run(["umount", "-l", str(path / "proc")], check=False)
        shutil.rmtree(path, ignore_errors=True)


def install(root: Root, deb: Path) -> str:
    """Install the package with apt, dependencies from Debian; apt's output."""
    inside = f"/root/{deb.name}"  # where the root's own apt finds it
    shutil.copy(deb, root.path / inside.lstrip("/"))
    root("apt-get", "update", "-q")
    return root("apt-get", "install", "-y", "-q", "--no-install-recommends", inside)


def the_package() -> Path:
    """The .deb under test, named by ``$GATEWAYD_DEB`` (``make deb-check`` sets it)."""
    path = os.environ.get("GATEWAYD_DEB")
    if not path:
        pytest.fail("GATEWAYD_DEB names no package: run these tests with `make deb-check`")
    return Path(path).resolve()
