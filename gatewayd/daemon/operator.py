"""The operator's side of the running daemon: gatewayctl's commands over the control
socket, and reloads of the configuration (SIGHUP or ``gatewayctl reload``).

Everything here runs on the main thread, between two items of its inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gatewayd.adapters import logs
from gatewayd.config import reload
from gatewayd.config.load import load
from gatewayd.config.schema import Config
from gatewayd.core.engine import Engine
from gatewayd.core.errors import ConfigError
from gatewayd.core.events import Event, Forget, Republish, Retry, Rotate
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor
from gatewayd.daemon.intake import Intake
from gatewayd.daemon.status import Reporter
from gatewayd.daemon.wiring import engine_settings

if TYPE_CHECKING:
    from gatewayd.adapters.exosite import ExositeClient

log = logging.getLogger(__name__)

COMMANDS: Final[dict[str, type[Republish | Retry | Forget | Rotate]]] = {
    "republish": Republish,
    "retry": Retry,
    "forget": Forget,
    "rotate": Rotate,
}


class Operator:
    """``config`` is the running configuration, which a reload replaces; ``handle`` hands
    an event to the engine and carries out what it returns; ``stopping`` tells whether
    the daemon is stopping."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        executor: Executor,
        intake: Intake,
        reporter: Reporter,
        exosite: ExositeClient,
        handle: Callable[[Event], None],
        stopping: Callable[[], bool],
        vendor_token: bool,
    ) -> None:
        self.config = config
        self._engine = engine
        self._executor = executor
        self._intake = intake
        self._reporter = reporter
        self._exosite = exosite
        self._handle = handle
        self._stopping = stopping
        self._vendor_token = vendor_token

    def reload(self) -> tuple[bool, str]:
        """Apply what can change live; keep the running configuration on any error.
        Whether it was taken, and what was done."""
        notifier = self._reporter.notifier
        notifier.reloading()
        try:
            loaded = load(Path(self.config.source))
        except ConfigError as exc:
            said = f"reload refused, the running configuration is kept: {exc}"
            log.error("%s", said)  # noqa: TRY400 (the message is the whole story)
            notifier.ready(self._reporter.text())
            return False, said
        change = reload.plan(self.config, loaded)
        self.config = change.config
        logs.set_level(change.config.gateway.log_level)
        self._engine.settings = engine_settings(change.config, vendor_token=self._vendor_token)
        self._intake.nodes = change.config.nodes
        self._exosite.reconfigure(change.config.exosite)
        said = f"configuration reloaded from {self.config.source}: "
        said += ", ".join(change.applied) or "nothing changed"
        log.info("%s", said)
        if change.restart:
            later = ", ".join(change.restart)
            log.warning(
                "changed in %s but applied only by a restart: %s", self.config.source, later
            )
            said += f"; changed, applied only by a restart: {later}"
        notifier.ready(self._reporter.text())
        return True, said

    def command(self, request: Request) -> None:
        """A command from the control channel, answered once carried out; one its caller
        has given up on is not carried out."""
        if not request.take():
            log.warning("gatewayctl %s given up by its caller: not carried out", request.command)
            return
        if request.command == "reload":
            ok, said = self.reload()
            request.answer({"ok": ok, "message": said})
            return
        if request.command == "status":
            summary = self._reporter.summary() | {
                "announces_dropped": self._intake.dropped,
                "state_database": "failing" if self._executor.state_failing else "ok",
                "unreadable_ciks": self._engine.unreadable(),
            }
            request.answer({"ok": True, **summary})
            return
        if request.command == "import":
            from gatewayd.daemon import importing  # noqa: PLC0415 (rare: loaded when asked)

            stopping = self._stopping()
            importing.take(request, self._executor, self._handle, stopping=stopping)
            return
        sn = request.sn or ""
        refusal = None
        if self._stopping():
            refusal = "gatewayd is stopping"
        elif request.command == "rotate" and not self._vendor_token:
            refusal = "a rotation needs the vendor token ([exosite] vendor_token_file)"
        elif (busy := self._executor.writing(sn)) is not None:
            refusal = busy if sn in self._executor.held else f"{busy}; try again in a moment"
        if refusal is not None:
            request.answer({"ok": False, "message": f"{sn}: {refusal}"})
            return
        self._executor.take_results()
        self._handle(COMMANDS[request.command](sn))
        results = self._executor.take_results()
        ok = bool(results) and all(r.ok for r in results)
        message = "; ".join(r.message for r in results) or f"{sn}: nothing was done"
        request.answer({"ok": ok, "message": message})
