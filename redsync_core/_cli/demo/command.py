"""The ``redsync demo`` command: options, the run's timeline and progress lines, exit statuses.

Ctrl-C, SIGTERM and SIGHUP unwind the run and stop every worker and node the demo started
(exit status 128 + N); the kernel kills them too if the demo itself is killed outright.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from redsync_core._servers import SERVER_SETTING, ServerUnavailable, require_server

from ..common import EXIT_SIGNAL_BASE, EXIT_UNAVAILABLE, UsageError, say
from .nodes import Nodes
from .referee import MemoryReferee, RedisReferee, Referee
from .report import print_wrapped, report
from .schedule import Plan, describe
from .workers import KEY_PREFIX, LOCK_NAME, Crew, WorkerConfig

__all__ = ["DESCRIPTION", "add_arguments", "main"]

DESCRIPTION = (
    "Start throwaway redis-server nodes on loopback (or in-process memory:// nodes when "
    "redis-server is not installed), let worker processes contend for one lock around a "
    "deliberately unsafe read-modify-write, kill, pause and restart nodes midway, and report "
    "acquisitions, lost updates and overlapping holders (both must be 0) and acquire latency. "
    "--unsafe runs the same workers without the lock, to show what the lock prevents. Exit "
    "status 1 when a safety violation is observed. The server binary is redis-server, or the "
    f"one the environment variable {SERVER_SETTING} names."
)
MIN_NODES = 3
MIN_WORKERS = 2
MIN_SECONDS = 3.0
TICK = 1.0  # seconds between progress lines
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    seconds: Callable[[str], float],
    count: Callable[[str], int],
) -> None:
    """Add the demo's options to its subparser (the argument types come from the CLI)."""
    parser.add_argument("--nodes", type=count, default=5, metavar="N", help="lock nodes (>= 3)")
    parser.add_argument("--workers", type=count, default=6, metavar="N", help="workers (>= 2)")
    parser.add_argument(
        "--seconds", type=seconds, default=20.0, metavar="S", help="run time (>= 3; default 20)"
    )
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="run the workers without the lock, to show the lost updates it prevents",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="use in-process memory:// nodes and threads even if redis-server is installed",
    )


class _Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: unwind and stop every process the demo started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not interrupt the cleanup and leave processes behind.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise _Stop(signum)


def main(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when safe, 1 on a safety violation.

    Returns 69 when a server or a worker could not start, 128 + N when stopped by signal N.
    Raises UsageError for options out of range.
    """
    if args.nodes < MIN_NODES:
        raise UsageError(f"--nodes must be at least {MIN_NODES} for a fault to be tolerated")
    if args.workers < MIN_WORKERS:
        raise UsageError(f"--workers must be at least {MIN_WORKERS} to contend for the lock")
    if args.seconds < MIN_SECONDS:
        raise UsageError(f"--seconds must be at least {MIN_SECONDS:g}")
    unusable = None if args.memory else _unusable_server()
    memory = args.memory or unusable is not None
    plan = Plan.make(
        seconds=args.seconds,
        workers=args.workers,
        nodes=args.nodes,
        unsafe=args.unsafe,
        inject=not memory,
    )
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    logging.getLogger("redsync").setLevel(logging.CRITICAL)
    nodes = Nodes(plan.nodes, memory=memory)
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(nodes.stop)
            nodes.start()
            return _Run(plan, nodes, stack, unusable=unusable).run()
    except RuntimeError as exc:  # a redis-server or a worker that did not start
        say(f"error: {exc}")
        return EXIT_UNAVAILABLE
    except _Stop as exc:
        say("interrupted: stopped every worker and node the demo started")
        return EXIT_SIGNAL_BASE + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _unusable_server() -> ServerUnavailable | None:
    """Return why no usable server binary is here, or None when there is one."""
    try:
        require_server()
    except ServerUnavailable as exc:
        return exc
    return None


class _Run:
    """One run: intro, workers, the timeline of progress lines and faults, then the report."""

    def __init__(
        self,
        plan: Plan,
        nodes: Nodes,
        stack: contextlib.ExitStack,
        *,
        unusable: ServerUnavailable | None,
    ) -> None:
        self.plan = plan
        self.nodes = nodes
        self.stack = stack
        self.unusable = unusable  # why memory nodes are used although --memory was not given
        self.tty = sys.stdout.isatty()
        self.crew = Crew(
            plan.workers,
            WorkerConfig(nodes.urls, nodes.referee_url, plan.expiry, plan.unsafe),
            stack,
        )

    def run(self) -> int:
        self._intro()
        referee: Referee
        if self.nodes.memory:
            referee = MemoryReferee()
            self.crew.start_threads(referee)
        else:
            assert self.nodes.referee_url is not None
            referee = RedisReferee(self.nodes.referee_url)
            self.crew.start_processes()
        self.stack.callback(referee.close)
        self.crew.await_ready()
        began_ns = time.monotonic_ns()
        self.crew.start.set()
        self._drive(referee)
        self.crew.stop.set()
        collected = self.crew.collect(self.plan.expiry)
        updates, counter, _ = referee.snapshot()
        return report(self.plan, began_ns, collected, updates, counter)

    def _drive(self, referee: Referee) -> None:
        """Print a progress line every second and inject each fault when it is due."""
        plan = self.plan
        t0 = time.monotonic()
        pending = list(plan.faults)
        next_tick = TICK
        last_updates, last_tick = 0, 0.0
        killed_at: float | None = None
        while True:
            now = time.monotonic() - t0
            if now >= plan.seconds:
                break
            if pending:
                fault = pending[0]
                if now >= fault.due(killed_at, plan.expiry):
                    pending.pop(0)
                    self.nodes.apply(fault)
                    fault.done_at = time.monotonic() - t0
                    if fault.action == "kill":
                        killed_at = fault.done_at
                    if fault.action == "restart" and killed_at is not None:
                        fault.note = f"{fault.done_at - killed_at:.1f} s after its kill"
                    self._line(f"{fault.done_at:5.1f}s  FAULT  {describe(fault, plan)}")
                    continue
            if now >= next_tick:
                updates, _, holder = referee.snapshot()
                rate = (updates - last_updates) / max(1e-3, now - last_tick)
                last_updates, last_tick = updates, now
                states = " ".join(self.nodes.states) or "(no lock)"
                self._progress(
                    f"{now:5.1f}s  {'updates' if plan.unsafe else 'acquisitions'} {updates:6d}"
                    f"  ({rate:5.0f}/s)  last holder {holder:<4}  nodes [{states}]"
                )
                next_tick += TICK
            wake = min(plan.seconds, next_tick, *(f.at for f in pending[:1]))
            time.sleep(min(0.2, max(0.005, wake - (time.monotonic() - t0))))
        if self.tty:
            print()

    def _line(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, flush=True)
        else:
            print(text, flush=True)

    def _progress(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, end="", flush=True)
        else:
            print(text, flush=True)

    def _intro(self) -> None:
        plan, nodes = self.plan, self.nodes
        kind = "threads" if nodes.memory else "processes"
        if plan.unsafe:
            print(
                f"redsync demo --unsafe: {plan.workers} worker {kind} update one counter "
                f"with no lock for {plan.seconds:g} s (read it, sleep 1-4 ms, write it +1)"
            )
        else:
            print_wrapped(
                f"redsync demo: {plan.workers} worker {kind} contend for lock "
                f"{KEY_PREFIX + LOCK_NAME!r} on {plan.nodes} nodes (quorum {plan.quorum}, "
                f"expiry {plan.expiry:g} s) for {plan.seconds:g} s; under it each one updates a "
                "counter unsafely (read it, sleep 1-4 ms, write it +1)",
                indent=0,
            )
        if nodes.memory:
            why = "--memory was given" if self.unusable is None else self.unusable.reason
            print(
                f"  {why}: using in-process memory:// nodes, so the workers are threads of this "
                "process and no node faults are injected"
                + ("" if self.unusable is None else " (install redis-server for the full demo)")
            )
        else:
            print(f"  {nodes.where()}; all stopped at the end")
        if plan.faults:
            planned = ", ".join(
                f"{f.action} {', '.join(f'n{i}' for i in f.nodes)} at {f.at:.1f}s"
                for f in plan.faults
            )
            print(f"  faults planned (never more than the quorum tolerates): {planned}")
