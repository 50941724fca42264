"""The demo's plan: how long, how many, the lock expiry, and faults Redlock tolerates.

The fault schedule never leaves more nodes unavailable than the quorum tolerates:

- a minority of nodes is killed (as many as the quorum tolerates);
- one killed node is restarted *empty* only after the lock expiry has passed since its death.
  Every lock it held had expired by then, so it cannot vote for a second holder. Restarting
  sooner without persistence could (Redlock's known limit; antirez's "delayed restarts");
- one node is paused (SIGSTOP) and resumed, while no more than the tolerated number of nodes is
  unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RESTART_MARGIN", "TIMEOUT_FACTOR", "Fault", "Plan", "describe", "fault_schedule"]

RESTART_MARGIN = 0.25  # seconds added to the expiry before an empty restart
TIMEOUT_FACTOR = 0.1  # fan-out deadline = expiry * this


@dataclass
class Fault:
    """One planned fault: at ``at`` seconds into the run, ``action`` on node indexes."""

    at: float
    action: str  # "kill", "restart", "pause", "resume"
    nodes: tuple[int, ...]
    done_at: float | None = None
    note: str = ""

    def due(self, killed_at: float | None, expiry: float) -> float:
        """Return when to inject it (seconds into the run): a restart waits out the expiry."""
        if self.action == "restart" and killed_at is not None:
            return max(self.at, killed_at + expiry + RESTART_MARGIN)
        return self.at


def fault_schedule(nodes: int, seconds: float, expiry: float) -> list[Fault]:
    """Plan faults that never leave more nodes unavailable than the quorum tolerates."""
    tolerated = nodes - (nodes // 2 + 1)
    killed = tuple(range(tolerated))
    kill_at = 0.25 * seconds
    restart_at = max(0.45 * seconds, kill_at + expiry + RESTART_MARGIN)
    pause_at = max(0.5 * seconds, restart_at)
    resume_at = max(0.7 * seconds, pause_at + 0.1 * seconds)
    paused = (tolerated,)  # the first node that was not killed
    return [
        Fault(kill_at, "kill", killed),
        Fault(restart_at, "restart", (0,)),
        Fault(pause_at, "pause", paused),
        Fault(resume_at, "resume", paused),
    ]


@dataclass
class Plan:
    """What one run does: ``seconds`` of ``workers`` on ``nodes`` lock nodes (0 with --unsafe)."""

    seconds: float
    workers: int
    nodes: int
    unsafe: bool
    expiry: float  # seconds
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def make(cls, *, seconds: float, workers: int, nodes: int, unsafe: bool, inject: bool) -> Plan:
        """Plan a run; faults only when ``inject`` (real servers) and not ``unsafe``."""
        expiry = min(2.0, max(1.0, seconds / 10))
        faults = fault_schedule(nodes, seconds, expiry) if inject and not unsafe else []
        return cls(seconds, workers, 0 if unsafe else nodes, unsafe, expiry, faults)

    @property
    def quorum(self) -> int:
        """The number of nodes a holder needs."""
        return self.nodes // 2 + 1


def describe(fault: Fault, plan: Plan) -> str:
    """Say what ``fault`` did, in one line."""
    names = ", ".join(f"n{i}" for i in fault.nodes)
    if fault.action == "kill":
        return (
            f"killed {names} (SIGKILL): {len(fault.nodes)} of {plan.nodes} down, a quorum of "
            f"{plan.quorum} is still reachable"
        )
    if fault.action == "restart":
        return f"restarted {names} empty (no persistence), {fault.note}"
    if fault.action == "pause":
        return f"paused {names} (SIGSTOP): it accepts connections but never answers"
    return f"resumed {names} (SIGCONT)"
