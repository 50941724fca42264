"""``redsync_core.otel`` with the real OpenTelemetry SDK and its in-memory exporters.

Sync and asyncio (the ``api`` fixture) against real redis-server nodes: spans for lock, extend
and unlock; the metrics of the table in docs/observability.md, with lock names on spans only;
a lost lock; node errors from a refused loopback port; and nothing after ``uninstrument()``.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk (test extra)"
)

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from redsync_core import AsyncRedsync, LockTaken, QuorumUnreachable, Redsync, otel
from redsync_core.testing import RedisServer, free_port

FOREIGN = "someone-else"
METRICS = {
    "redsync.lock.wait.duration": "s",
    "redsync.lock.hold.duration": "s",
    "redsync.lock.attempts": "{attempt}",
    "redsync.lock.extensions": "{extension}",
    "redsync.lock.lost": "{lock}",
    "redsync.node.errors": "{error}",
}


async def settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def eventually(predicate: Any, seconds: float = 10.0) -> bool:
    for _ in range(round(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


class Telemetry:
    """The SDK wired to in-memory exporters, and readers of what they hold."""

    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[Any]:
        return [s for s in self.spans_out.get_finished_spans() if name in (None, s.name)]

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == "redsync_core"
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def by(self, name: str, key: str) -> dict[Any, Any]:
        return {p.attributes.get(key): p for p in self.points(name)}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    yield t
    otel.uninstrument()
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@pytest.fixture(params=["sync", "asyncio"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(api: str, urls: list[str], **defaults: Any) -> Redsync | AsyncRedsync:
    kind = Redsync if api == "sync" else AsyncRedsync
    return kind(urls, client_options={"socket_connect_timeout": 0.5}, **defaults)


@pytest.fixture
async def rsx(api: str, redis_nodes: list[RedisServer]) -> AsyncIterator[Any]:
    redsync = make(api, [s.url for s in redis_nodes])
    yield redsync
    await settle(redsync.close())


def occupy(servers: list[RedisServer], key: str) -> None:
    for server in servers:
        client = server.client()
        try:
            client.set(key, FOREIGN, px=10_000)
        finally:
            client.close()


async def test_lock_and_unlock_make_spans_and_metrics(rsx: Any, telemetry: Telemetry) -> None:
    mutex = rsx.new_mutex("orders:42")
    await settle(mutex.lock())
    await asyncio.sleep(0.02)
    assert await settle(mutex.extend())
    assert await settle(mutex.unlock())

    [lock] = telemetry.spans("redsync.lock")
    assert lock.attributes["redsync.lock.name"] == "orders:42"
    assert lock.attributes["redsync.lock.outcome"] == "acquired"
    assert lock.attributes["redsync.lock.attempts"] == 1
    assert lock.status.status_code is StatusCode.UNSET
    assert lock.end_time > lock.start_time
    [extend] = telemetry.spans("redsync.extend")
    assert extend.attributes["redsync.extension.result"] == "ok"
    assert extend.attributes["redsync.extension.kind"] == "manual"
    [unlock] = telemetry.spans("redsync.unlock")
    assert unlock.attributes["redsync.lock.released"] is True
    assert lock.end_time <= extend.start_time <= unlock.start_time

    metrics = telemetry.metrics()
    assert {name: metrics[name].unit for name in metrics} == {
        name: unit for name, unit in METRICS.items() if name in metrics
    }
    [wait] = telemetry.points("redsync.lock.wait.duration")
    assert dict(wait.attributes) == {"redsync.lock.outcome": "acquired"}
    assert wait.count == 1
    assert 0 < wait.sum < 5
    [hold] = telemetry.points("redsync.lock.hold.duration")
    assert hold.count == 1
    assert 0.02 <= hold.sum < 5
    [attempts] = telemetry.points("redsync.lock.attempts")
    assert (attempts.count, attempts.sum) == (1, 1)
    [extensions] = telemetry.points("redsync.lock.extensions")
    assert extensions.value == 1
    assert dict(extensions.attributes) == {
        "redsync.extension.result": "ok",
        "redsync.extension.kind": "manual",
    }


async def test_contention_is_counted_by_outcome_never_by_name(
    rsx: Any, redis_nodes: list[RedisServer], telemetry: Telemetry
) -> None:
    occupy(redis_nodes, "busy:1")
    for name in ("busy:1", "free:1", "free:2"):
        mutex = rsx.new_mutex(name, tries=1)
        if await settle(mutex.try_lock()):
            await settle(mutex.unlock())
    with pytest.raises(LockTaken):
        await settle(rsx.new_mutex("busy:1", tries=2, retry_delay=0.01).lock())

    waits = telemetry.by("redsync.lock.wait.duration", "redsync.lock.outcome")
    assert {k: p.count for k, p in waits.items()} == {"acquired": 2, "taken": 2}
    attempts = telemetry.by("redsync.lock.attempts", "redsync.lock.outcome")
    assert (attempts["taken"].count, attempts["taken"].sum) == (2, 3)
    for metric in telemetry.metrics().values():
        for point in metric.data.data_points:
            assert "redsync.lock.name" not in point.attributes
            assert not any("busy" in str(v) or "free" in str(v) for v in point.attributes.values())
    taken = [
        s for s in telemetry.spans("redsync.lock") if s.attributes["redsync.lock.name"] == "busy:1"
    ]
    assert [s.attributes["error.type"] for s in taken] == ["LockTaken", "LockTaken"]
    assert all(s.status.status_code is StatusCode.UNSET for s in taken)  # busy is no error


async def test_a_lost_lock_is_counted(
    api: str, redis_nodes: list[RedisServer], telemetry: Telemetry
) -> None:
    rs = make(api, [s.url for s in redis_nodes])
    mutex = rs.new_mutex("lost:1", expiry=0.6, auto_extend=True)
    try:
        await settle(mutex.lock())
        await asyncio.sleep(0.5)  # at least one automatic extension goes through
        assert await settle(rs.force_release("lost:1")) == 3
        assert await eventually(lambda: mutex.lost)
        assert mutex.lost
        assert not await settle(mutex.unlock())
    finally:
        await settle(rs.close())

    [lost] = telemetry.points("redsync.lock.lost")
    assert lost.value == 1
    assert dict(lost.attributes) == {}
    extensions = {
        (p.attributes["redsync.extension.result"], p.attributes["redsync.extension.kind"]): p.value
        for p in telemetry.points("redsync.lock.extensions")
    }
    assert extensions[("ok", "auto")] >= 1
    assert extensions[("failed", "auto")] >= 1
    [hold] = telemetry.points("redsync.lock.hold.duration")
    assert dict(hold.attributes) == {"redsync.lock.released": False}
    assert {s.attributes["redsync.extension.kind"] for s in telemetry.spans("redsync.extend")} == {
        "auto"
    }


async def test_node_errors_are_counted_by_address_without_password(
    api: str, redis_nodes: list[RedisServer], telemetry: Telemetry
) -> None:
    refused = [free_port(), free_port()]
    down = [f"redis://app:s3cret@127.0.0.1:{port}/0" for port in refused]
    rs = make(api, [redis_nodes[0].url, *down])
    try:
        with pytest.raises(QuorumUnreachable):
            await settle(rs.new_mutex("down:1").lock())
    finally:
        await settle(rs.close())

    errors = telemetry.points("redsync.node.errors")
    addresses = {p.attributes["redsync.node.address"]: p for p in errors}
    assert set(addresses) == {f"redis://127.0.0.1:{port}/0" for port in refused}
    for point in errors:
        assert point.attributes["error.type"] == "ConnectionError"
        assert point.value == 2  # the acquire, then the release after it
        assert "s3cret" not in str(dict(point.attributes))
    [span] = telemetry.spans("redsync.lock")
    assert span.attributes["redsync.lock.outcome"] == "unreachable"
    assert span.status.status_code is StatusCode.ERROR
    [wait] = telemetry.points("redsync.lock.wait.duration")
    assert wait.attributes["redsync.lock.outcome"] == "unreachable"


async def test_uninstrument_stops_every_span_and_metric(rsx: Any, telemetry: Telemetry) -> None:
    mutex = rsx.new_mutex("quiet:1")
    await settle(mutex.lock())
    await settle(mutex.unlock())
    assert otel.instrumented()
    spans_before, waits_before = (
        len(telemetry.spans()),
        telemetry.points("redsync.lock.wait.duration")[0].count,
    )

    otel.uninstrument()
    otel.uninstrument()  # twice is fine
    assert not otel.instrumented()
    await settle(mutex.lock())
    assert await settle(mutex.extend())
    await settle(mutex.unlock())

    assert len(telemetry.spans()) == spans_before == 2
    assert telemetry.points("redsync.lock.wait.duration")[0].count == waits_before == 1
    assert telemetry.points("redsync.lock.extensions") == []


def test_instrument_again_replaces_the_providers(telemetry: Telemetry) -> None:
    second = Telemetry()
    otel.instrument(tracer_provider=second.tracer_provider, meter_provider=second.meter_provider)
    with Redsync(["memory://otel-again"]) as rs, rs.new_mutex("again"):
        pass
    assert len(second.spans()) == 2
    assert telemetry.spans() == []  # the first providers hear nothing any more


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_core_imports_and_locks_without_opentelemetry() -> None:
    """Nothing but ``redsync_core.otel`` imports OpenTelemetry: with every ``opentelemetry``
    import refused (as if not installed), the core, its hooks and the adapters' helpers import
    and lock. (redis-py 8 imports OpenTelemetry itself when it is installed; it copes without.)
    """
    out = run_python(
        """
        import sys

        class NoOtel:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ImportError(f"blocked: {name}")

        sys.meta_path.insert(0, NoOtel())
        import redsync_core, redsync_core.hooks, redsync_core.adapters
        with redsync_core.Redsync(["memory://no-otel"]) as rs, rs.new_mutex("x"):
            pass
        print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "redsync_core.otel"))))
        """
    )
    assert out.strip() == "[]"


def test_without_opentelemetry_the_module_says_what_to_install() -> None:
    out = run_python(
        """
        import sys

        class NoOtel:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ImportError(f"blocked: {name}")

        sys.meta_path.insert(0, NoOtel())
        try:
            import redsync_core.otel
        except ImportError as exc:
            print(exc)
        """
    )
    assert "pip install 'redsync-suite[otel]'" in out


def test_instrument_uses_the_global_providers_by_default() -> None:
    out = run_python(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from redsync_core import Redsync, otel

        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        otel.instrument()
        with Redsync(["memory://otel-global"]) as rs, rs.new_mutex("global"):
            pass
        names = [m.name for r in reader.get_metrics_data().resource_metrics
                 for s in r.scope_metrics for m in s.metrics]
        print(sorted(s.name for s in spans.get_finished_spans()), sorted(names))
        """
    )
    assert out.strip() == (
        "['redsync.lock', 'redsync.unlock'] "
        "['redsync.lock.attempts', 'redsync.lock.hold.duration', 'redsync.lock.wait.duration']"
    )
