"""The state folder's lock (:mod:`gatewayd.adapters.statelock`) for the gatewayctl commands
that may write the state or the keystore themselves: ``import``, while gatewayd is stopped.

:func:`writing` runs such a command holding the lock from its start, so that no gatewayd
starts under it; when gatewayd holds the lock and answers on its control socket, the
command runs without it and goes to the running daemon. Wherever the command is about to
write the folder itself, :func:`hold` makes sure it holds the lock, else refuses it: the
lock is what decides, whatever the socket said before. A refusal is a
:class:`StateRefusedError`, exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Final

from gatewayd.adapters.statelock import GATEWAYCTL, GATEWAYD, StateLock, StateLockedError
from gatewayd.config.schema import Config
from gatewayd.core.errors import GatewaydError, StateError
from gatewayd.daemon import control

WRITERS: Final = frozenset({"import"})
"""The commands that may write the state folder themselves."""
ANSWER_WAIT: Final = 5.0
"""How long gatewayctl waits for gatewayd to answer whether it runs, in seconds."""


class StateRefusedError(GatewaydError):
    """Another process holds the state folder's lock: the command is not carried out."""


@contextlib.contextmanager
def writing(config: Config, args: argparse.Namespace) -> Iterator[None]:
    """Around a command that may write the state folder: its lock taken, if the folder
    exists, and held until the command ends (``args.state_lock``). Refused if another
    gatewayctl holds it, or gatewayd holds it but does not answer (it is starting or
    stopping); gatewayd holding it and answering, the command runs without it, and so it
    does where the lock cannot be taken at all (an import into the running gatewayd needs
    no write here)."""
    args.state_lock = None
    try:
        if config.gateway.state_dir.is_dir():  # no folder yet: hold() makes it, under the lock
            try:
                args.state_lock = StateLock.take(config.gateway.state_dir, GATEWAYCTL)
            except StateLockedError as exc:
                if exc.holder.role != GATEWAYD or not _answers(config):
                    raise refusal(config, exc) from None
            except StateError:  # a folder this user cannot lock: said by hold(), if it writes
                pass
        yield
    finally:
        lock: StateLock | None = args.state_lock
        if lock is not None:
            lock.release()


def hold(config: Config, args: argparse.Namespace) -> None:
    """Before the command writes the state folder itself: hold its lock, unless it does
    already (:func:`writing` releases it); StateRefusedError if another process holds it."""
    if getattr(args, "state_lock", None) is not None:
        return
    try:
        args.state_lock = StateLock.take(config.gateway.state_dir, GATEWAYCTL)
    except StateLockedError as exc:
        raise refusal(config, exc) from None


def refusal(config: Config, locked: StateLockedError) -> StateRefusedError:
    """What gatewayctl says when ``locked``: who holds the folder, and what to do."""
    holder, folder = locked.holder, locked.folder
    if holder.role == GATEWAYD:
        return StateRefusedError(
            f"gatewayd is running: use the running daemon (pid {holder.pid} holds {folder} "
            f"but does not answer on {config.gateway.control_socket}: it is starting or "
            "stopping; try again)"
        )
    if holder.role == GATEWAYCTL:
        return StateRefusedError(
            f"another gatewayctl holds the state (pid {holder.pid} holds {folder}): "
            "try again once it has finished"
        )
    return StateRefusedError(f"another process holds the state folder {folder}: try again")


def _answers(config: Config) -> bool:
    """Whether gatewayd answers on its control socket."""
    try:
        control.call(config.gateway.control_socket, "status", timeout=ANSWER_WAIT)
    except control.NotRunningError:
        return False
    return True
