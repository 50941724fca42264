"""``LockedCommand``: a management command that never runs twice at once across hosts."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redsync_core import LockNotAcquired, QuorumUnreachable
from redsync_core.adapters import free_in

from ..locks import distributed_lock

__all__ = ["LockedCommand"]


class LockedCommand(BaseCommand):
    """A ``BaseCommand`` whose ``handle()`` runs under an auto-extended distributed lock.

    The lock is named ``manage:<command>`` (set ``lock_name`` to share or rename it); its TTL
    is ``lock_expiry`` seconds (default: ``REDSYNC["OPTIONS"]``, else 30), renewed while
    ``handle()`` runs, and ``lock_options`` may add other core mutex options. Adds ``--lock-wait
    SECONDS`` (default 0: one attempt) and ``--no-lock``. When another run holds the lock,
    one line goes to stderr and the command exits with status 0 without running ``handle()``.

    Raises:
        CommandError: a quorum of Redis nodes could not be reached.
    """

    lock_name: ClassVar[str | None] = None
    lock_expiry: ClassVar[float | None] = None
    lock_options: ClassVar[Mapping[str, Any]] = {}

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        group = parser.add_argument_group("distributed lock (redsync)")
        group.add_argument(
            "--lock-wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Seconds to wait while another run holds the lock (default 0: give up at once).",
        )
        group.add_argument(
            "--no-lock", action="store_true", help="Run without taking the distributed lock."
        )
        return parser

    def get_lock_name(self) -> str:
        """Return the lock name: ``lock_name``, else ``manage:<command module name>``."""
        return self.lock_name or f"manage:{type(self).__module__.rpartition('.')[2]}"

    def execute(self, *args: Any, **options: Any) -> str | None:
        if options.get("no_lock"):
            return super().execute(*args, **options)
        lock = distributed_lock(
            self.get_lock_name(),
            wait=options.get("lock_wait") or 0.0,
            on_busy=self._report_busy,
            **self._mutex_options(),
        )
        # Wrap this instance's handle() only for this run (the class's handle is untouched).
        self.handle = lock(types.MethodType(type(self).handle, self))  # type: ignore[method-assign]
        try:
            return super().execute(*args, **options)
        except QuorumUnreachable as exc:
            raise CommandError(str(exc)) from exc
        finally:
            del self.handle

    def _mutex_options(self) -> dict[str, Any]:
        options = dict(self.lock_options)
        if self.lock_expiry is not None:
            options["expiry"] = self.lock_expiry
        options["auto_extend"] = True
        return options

    def _report_busy(self, exc: LockNotAcquired, *args: Any, **options: Any) -> None:
        self.stderr.write(
            f"Skipped: lock {exc.name!r} is held by another run ({free_in(exc.retry_after)}); "
            "not running."
        )
