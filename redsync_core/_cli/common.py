"""Exit statuses and output helpers shared by the ``redsync`` subcommands."""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_BUSY",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_FREE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_SIGNAL_BASE",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "EXIT_VIOLATION",
    "PROG",
    "UsageError",
    "say",
]

PROG = "redsync"

EXIT_OK = 0
EXIT_FREE = 1  # `status`: nobody holds the lock
EXIT_VIOLATION = 1  # `demo`: a safety violation was observed (or could not be ruled out)
EXIT_USAGE = 2  # argparse's own convention
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: no quorum of nodes answered
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: try again later
EXIT_CANNOT_EXECUTE = 126  # as a shell says
EXIT_NOT_FOUND = 127  # as a shell says
EXIT_SIGNAL_BASE = 128  # 128 + N: killed by signal N, as a shell says


class UsageError(Exception):
    """Bad command-line input: reported on one line, exit status 2."""


def say(line: str) -> None:
    """Print one line to stderr, prefixed with the program name (newlines folded)."""
    print(f"{PROG}: " + " ".join(line.split()), file=sys.stderr, flush=True)
