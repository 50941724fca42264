"""Argument checks shared by the sync and asyncio semaphores and multi-mutexes."""

from __future__ import annotations

from collections.abc import Iterable

from ._base import check_name
from ._exceptions import ConfigurationError
from ._options import MutexOptions

__all__ = ["MAX_LIMIT", "check_limit", "check_names", "check_permit_options"]

#: The most permits a semaphore may have: each is a key, tried in one script call per node.
MAX_LIMIT = 1024


def check_limit(limit: object) -> int:
    """Return ``limit`` if it is an integer in [1, MAX_LIMIT].

    Raises:
        ConfigurationError: otherwise.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(
            f"Invalid semaphore limit={limit!r:.40}: expected an integer in [1, {MAX_LIMIT}] "
            "(how many holders may hold it at once)."
        )
    return limit


def check_permit_options(options: MutexOptions) -> None:
    """Refuse the mutex options a semaphore cannot honour: a fixed ``value=`` (holders sharing
    a value would share a permit) and ``fencing=True`` (permits draw no fencing tokens).

    Raises:
        ConfigurationError: ``value`` is set, or ``fencing`` is true.
    """
    if options.value is not None:
        raise ConfigurationError(
            "Invalid option value= for a semaphore: every holder needs its own value (holders "
            "sharing one would share a permit); leave value unset (or use gen_value_func)."
        )
    if options.fencing:
        raise ConfigurationError(
            "Invalid option fencing=True for a semaphore: its permits draw no fencing tokens "
            "(token would stay None); use fencing with a mutex or a multi-mutex, or pass "
            "fencing=False."
        )


def check_names(names: object) -> tuple[str, ...]:
    """Return the names of a multi-mutex, without duplicates, sorted.

    Raises:
        ConfigurationError: ``names`` is a single string, not iterable, empty, or holds an
            invalid name.
    """
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ConfigurationError(
            f"Invalid multi-mutex names={names!r:.60}: expected a list of names, "
            "e.g. ['account:1', 'account:2']."
        )
    unique = tuple(sorted({check_name(name) for name in names}))
    if not unique:
        raise ConfigurationError("Invalid multi-mutex names=[]: expected at least one name.")
    return unique
