"""OpenTelemetry for redsync locks: spans and metrics from the core's lock events.

``pip install 'redsync-suite[otel]'``, then once at start-up::

    from redsync_core import otel

    otel.instrument()            # the global tracer and meter providers
    otel.uninstrument()          # stop (e.g. in tests)

Spans ``redsync.lock``, ``redsync.extend`` and ``redsync.unlock`` carry the lock name; metrics
carry only low-cardinality attributes (outcome, result, kind, node address). The names, units
and attributes are listed in one table in ``docs/observability.md``. Importing
``redsync_core`` never imports OpenTelemetry; only this module does.
"""

from __future__ import annotations

import threading

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "redsync_core.otel needs the OpenTelemetry API: pip install 'redsync-suite[otel]' "
        "(opentelemetry-api), plus the SDK and exporters your service uses."
    ) from exc

from . import __version__
from ._hooks import (
    ExtendEvent,
    Listener,
    LockEvent,
    LostEvent,
    NodeErrorEvent,
    UnlockEvent,
    add_listener,
    remove_listener,
)

__all__ = ["instrument", "instrumented", "uninstrument"]

SCOPE = "redsync_core"

# Bucket boundaries (seconds): a loopback lock takes well under a millisecond, a contended
# one up to its timeout; holds run from milliseconds to the longest jobs.
WAIT_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
HOLD_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
ATTEMPT_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 32, 64, 128)


class _Instrumentation(Listener):
    """Turns lock events into spans and metric points."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.wait = meter.create_histogram(
            "redsync.lock.wait.duration",
            unit="s",
            description="Time a lock() or try_lock() call took, by outcome.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS_S,
        )
        self.hold = meter.create_histogram(
            "redsync.lock.hold.duration",
            unit="s",
            description="Time from acquiring a lock to unlocking it.",
            explicit_bucket_boundaries_advisory=HOLD_BUCKETS_S,
        )
        self.attempts = meter.create_histogram(
            "redsync.lock.attempts",
            unit="{attempt}",
            description="Acquire attempts made by one lock() or try_lock() call, by outcome.",
            explicit_bucket_boundaries_advisory=ATTEMPT_BUCKETS,
        )
        self.extensions = meter.create_counter(
            "redsync.lock.extensions",
            unit="{extension}",
            description="Lock extensions, by result (ok, failed) and kind (auto, manual).",
        )
        self.lost_locks = meter.create_counter(
            "redsync.lock.lost",
            unit="{lock}",
            description="Auto-extended locks that could not be kept.",
        )
        self.node_errors = meter.create_counter(
            "redsync.node.errors",
            unit="{error}",
            description="Failed node replies, by node address (never a password) and error type.",
        )

    def lock(self, event: LockEvent) -> None:
        by_outcome = {"redsync.lock.outcome": event.outcome}
        self.wait.record(event.wait_s, by_outcome)
        self.attempts.record(event.attempts, by_outcome)
        span = self.tracer.start_span(
            "redsync.lock",
            kind=SpanKind.INTERNAL,
            start_time=event.started_ns,
            attributes={
                "redsync.lock.name": event.name,
                "redsync.lock.outcome": event.outcome,
                "redsync.lock.attempts": event.attempts,
            },
        )
        if event.error is not None:
            span.set_attribute("error.type", type(event.error).__name__)
            if event.outcome == "unreachable":
                span.set_status(Status(StatusCode.ERROR, "node errors left no quorum"))
        span.end(event.started_ns + round(event.wait_s * 1e9))

    def unlock(self, event: UnlockEvent) -> None:
        if event.held_s is not None:
            self.hold.record(event.held_s, {"redsync.lock.released": event.released})
        span = self.tracer.start_span(
            "redsync.unlock",
            kind=SpanKind.INTERNAL,
            start_time=event.started_ns,
            attributes={"redsync.lock.name": event.name, "redsync.lock.released": event.released},
        )
        span.end(event.started_ns + round(event.duration_s * 1e9))

    def extend(self, event: ExtendEvent) -> None:
        attributes = {
            "redsync.extension.result": "ok" if event.ok else "failed",
            "redsync.extension.kind": "auto" if event.auto else "manual",
        }
        self.extensions.add(1, attributes)
        span = self.tracer.start_span(
            "redsync.extend",
            kind=SpanKind.INTERNAL,
            start_time=event.started_ns,
            attributes={"redsync.lock.name": event.name, **attributes},
        )
        span.end(event.started_ns + round(event.duration_s * 1e9))

    def lost(self, event: LostEvent) -> None:
        self.lost_locks.add(1)

    def node_error(self, event: NodeErrorEvent) -> None:
        self.node_errors.add(1, {"redsync.node.address": event.address, "error.type": event.kind})


_current: _Instrumentation | None = None
_lock = threading.Lock()


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Emit spans and metrics for every lock of this process (again: replaces the providers).

    ``tracer_provider`` / ``meter_provider``: where spans and metrics go; None for the global
    providers (``opentelemetry.trace.set_tracer_provider`` and its metrics twin).
    """
    global _current
    instrumentation = _Instrumentation(tracer_provider, meter_provider)
    with _lock:
        if _current is not None:
            remove_listener(_current)
        _current = instrumentation
        add_listener(instrumentation)


def uninstrument() -> None:
    """Stop emitting spans and metrics (no-op when not instrumented)."""
    global _current
    with _lock:
        if _current is not None:
            remove_listener(_current)
            _current = None


def instrumented() -> bool:
    """Return True between ``instrument()`` and ``uninstrument()``."""
    return _current is not None
