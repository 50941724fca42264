"""Mutex options: one frozen, validated object holding every default in one place.

Seconds at the boundary, integer milliseconds inside: ``to_ms`` is the one conversion.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from ._algorithm.timing import validity_ms
from ._exceptions import ConfigurationError

__all__ = ["OPTION_NAMES", "MutexOptions", "is_text", "to_ms"]

DEFAULT_EXPIRY = 8.0
DEFAULT_TRIES = 32
DEFAULT_DRIFT_FACTOR = 0.01
DEFAULT_TIMEOUT_FACTOR = 0.05
#: 30 days: far beyond any sane lock, and well inside what Redis accepts for PX.
MAX_EXPIRY = 30 * 24 * 3600.0
#: One day: the longest delay between two attempts (the same bound as retry_delay_func's).
MAX_RETRY_DELAY = 86_400.0


def to_ms(seconds: float) -> int:
    """Convert seconds to whole milliseconds (rounded, never truncated to whole seconds)."""
    return round(seconds * 1000)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_text(value: object) -> bool:
    """Return True for a non-empty string that can be sent to Redis (UTF-8 encodable)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _bad(option: str, value: object, accepted: str) -> ConfigurationError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigurationError(f"Invalid option {option}={shown}: expected {accepted}.")


@dataclasses.dataclass(frozen=True)
class MutexOptions:
    """Every option of a mutex, validated once at construction.

    Times are in seconds. See the README's option table for what each one does.

    Raises:
        ConfigurationError: an option has the wrong type or is out of range.
    """

    expiry: float = DEFAULT_EXPIRY
    tries: int | None = DEFAULT_TRIES
    retry_delay: float | None = None
    retry_delay_func: Callable[[int], float] | None = None
    drift_factor: float = DEFAULT_DRIFT_FACTOR
    timeout_factor: float = DEFAULT_TIMEOUT_FACTOR
    gen_value_func: Callable[[], str] | None = None
    value: str | None = None
    fail_fast: bool = False
    shuffle_pools: bool = False
    set_nx_on_extend: bool = False
    auto_extend: bool = False
    fencing: bool = False
    on_lost: Callable[[Any], object] | None = None
    max_hold: float | None = None
    wake_on_release: bool = True

    def __post_init__(self) -> None:
        if not _is_number(self.expiry) or not 0.001 <= self.expiry <= MAX_EXPIRY:
            raise _bad("expiry", self.expiry, f"a number of seconds in [0.001, {MAX_EXPIRY:.0f}]")
        if self.tries is not None and (
            not isinstance(self.tries, int) or isinstance(self.tries, bool) or self.tries < 1
        ):
            raise _bad("tries", self.tries, "an integer >= 1, or None for unlimited")
        if self.retry_delay is not None and (
            not _is_number(self.retry_delay) or not 0 <= self.retry_delay < MAX_RETRY_DELAY
        ):
            # Bounded like retry_delay_func's results: a huge delay would make lock() fail with
            # an OverflowError from time.sleep instead of a documented error.
            raise _bad(
                "retry_delay",
                self.retry_delay,
                f"a number of seconds in [0, {MAX_RETRY_DELAY:.0f}), or None",
            )
        for name in ("drift_factor", "timeout_factor"):
            factor = getattr(self, name)
            if not _is_number(factor) or not 0 <= factor < 1:
                raise _bad(name, factor, "a number in [0, 1)")
        if validity_ms(self.expiry_ms, 0, self.drift_factor) <= 0:
            # Such a lock is never valid: lock() would retry until tries or timeout ran out.
            raise _bad(
                "expiry",
                self.expiry,
                "more than its clock drift allowance (expiry * drift_factor + 0.002 s, with "
                f"drift_factor={self.drift_factor:g}); a shorter lock is never valid",
            )
        for name in ("retry_delay_func", "gen_value_func", "on_lost"):
            func = getattr(self, name)
            if func is not None and not callable(func):
                raise _bad(name, func, "a callable or None")
        if self.value is not None and not is_text(self.value):
            raise _bad("value", self.value, "a non-empty string of valid Unicode, or None")
        for name in (
            "fail_fast",
            "shuffle_pools",
            "set_nx_on_extend",
            "auto_extend",
            "wake_on_release",
            "fencing",
        ):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "True or False")
        if self.max_hold is not None and (
            not _is_number(self.max_hold) or not self.expiry <= self.max_hold <= MAX_EXPIRY
        ):
            # Below the expiry, auto-extension would never run: say so rather than ignore it.
            raise _bad(
                "max_hold",
                self.max_hold,
                f"a number of seconds in [expiry, {MAX_EXPIRY:.0f}] (expiry={self.expiry:g}; "
                "auto-extension stops once an extension would hold the lock longer), or None",
            )

    @property
    def expiry_ms(self) -> int:
        """The lock TTL in milliseconds."""
        return to_ms(self.expiry)

    @property
    def max_hold_ms(self) -> int | None:
        """The cap on auto-extended holding in milliseconds, or None."""
        return None if self.max_hold is None else to_ms(self.max_hold)

    @classmethod
    def build(cls, *layers: Mapping[str, Any]) -> MutexOptions:
        """Merge option mappings (later ones win) into validated options.

        Raises:
            ConfigurationError: an unknown option name or an invalid value.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            unknown = sorted(set(layer) - OPTION_NAMES)
            if unknown:
                raise ConfigurationError(
                    f"Unknown option {unknown[0]!r}: expected one of {', '.join(sorted(OPTION_NAMES))}."
                )
            merged.update(layer)
        return cls(**merged)


OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(MutexOptions))
