"""``redsync demo``: Redlock at work on throwaway local nodes, with node faults injected midway.

Workers contend for one lock around a deliberately unsafe read-modify-write of a counter kept
on a separate "referee" server (GET, sleep a little, SET value+1). With the lock every update
lands; without it (``--unsafe``) concurrent updates overwrite each other. Each worker also logs
the interval in which it held the lock, so overlapping holders are detected directly. Any lost
update or overlap is reported, never hidden, and makes the exit status 1.

One module per concern:

- ``referee``: the protected counter (on its own redis-server, or in memory);
- ``workers``: what a worker does, and starting, awaiting and stopping them (threads or
  processes that die with the demo);
- ``schedule``: the run's plan and the fault schedule, kept within what Redlock tolerates;
- ``nodes``: the lock nodes and the referee server, and injecting the faults into them;
- ``report``: the final counts, latencies, the faults' effects and the verdict;
- ``command``: the options, the timeline with its progress lines, signals and exit statuses.
"""

from __future__ import annotations

from .command import DESCRIPTION, add_arguments, main

__all__ = ["DESCRIPTION", "add_arguments", "main"]
