"""The ```python blocks of README.md and docs/*.md, run against real redis-server nodes.

Every block is either run or listed in ``NOT_RUN`` with the reason it cannot run as it stands
(a Django settings fragment, a Celery task module that needs a broker...). A listed block is
still compiled, and every ``from redsync_... import NAME`` in it must name something that module
defines, so a renamed public name shows in the docs too.

How a block runs:
- the node URLs of the docs (``redis://10.0.0.1:6379/0`` ... ``10.0.0.3``) are replaced by the
  loopback URLs of the ``redis_nodes`` fixture; a block that still names another address fails
  before it runs, and an audit hook refuses any connection to a non-loopback address meanwhile;
- names the docs use without defining them come from ``namespace()``: ``urls``, ``rs`` (a
  ``Redsync`` over those nodes), ``Redsync`` / ``AsyncRedsync`` (imported earlier on the page),
  and stand-ins for the application's own functions (``compute``, ``save``, ``render_report``...)
  that record their calls; ``SEEDS`` adds the user's own objects a block names (a Flask ``app``);
- a block with top-level ``await`` / ``async with`` runs in ``asyncio.run``;
- ``FOLLOW_UP`` calls what some blocks define (a decorated function, a worker) and checks what
  the text around the block says it does.
Listeners a block adds, ``otel.instrument()`` and the ``Redsync`` objects it builds are undone
after it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import ipaddress
import logging
import re
import socket
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redsync_core import AsyncRedsync, ConfigurationError, LockTaken, Redsync
from redsync_core import _hooks as hooks_registry
from redsync_core.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

DOC_URL = re.compile(r"redis://10\.0\.0\.([123]):6379/0")
FOREIGN_ADDRESS = re.compile(r"\b(?!127\.0\.0\.1\b)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
FENCE = re.compile(r"^([ \t]*)```(\w*)[ \t]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)

# (file, a text found in exactly one ```python block of that file): why the block is not run.
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", 'INSTALLED_APPS += ["redsync_django"]'): "Django settings and a view fragment",
    ("README.md", "from redsync_celery import SingletonTask"): (
        "Celery fragment (`app` is the user's); example_projects/celery_app is tested instead"
    ),
    ("README.md", "import valkey"): (
        "the node addresses sit in a comprehension over host names (port 6379 on each); "
        "valkey-py clients as nodes: tests/core/test_valkey.py"
    ),
    ("README.md", "from redsync_core.testing import child_process"): (
        "starts `celery -A proj worker` for a project that is not here"
    ),
    ("docs/api.md", "rs.quorum; rs.nodes; rs.addresses"): (
        "a summary, not a program: `urls_or_clients`, `**defaults`, `ars`, and `rs.asyncio()` "
        "needs a running event loop"
    ),
    ("docs/api.md", "held.mutex.origin = call"): "a sketch with `...` between its parts",
    ("docs/celery.md", 'app = Celery("proj"'): (
        "a Celery task module: `@app.task` registers a shared task in every later app of the "
        "test process; tests/celery and example_projects/celery_app run these"
    ),
    ("docs/celery.md", 'lock_scope="queue"'): "needs a broker and a worker",
    ("docs/celery.md", "lock_hold_after=600"): "a Celery task module fragment (shared task, `app`)",
    ("docs/celery.md", "from redsync_celery.signals import"): "Celery signal receivers (`metrics`)",
    ("docs/django.md", "# settings.py"): "Django settings fragment",
    ("docs/django.md", "from django.utils.decorators import method_decorator"): (
        "Django views (`org`, a configured project)"
    ),
    ("docs/django.md", "from redsync_django.management import LockedCommand"): (
        "a Django management command module"
    ),
    ("docs/django.md", "ops_site.register(Lock, LockAdmin)"): "Django admin site fragment",
    ("docs/django.md", "class Invoice(models.Model)"): (
        "a Django model; tests/django/test_django_fencing_recipe.py runs the recipe"
    ),
    ("docs/safety.md", "Invoice.objects.filter(pk=pk).update(owner=m.value)"): (
        "Django ORM fragment (`Invoice`, `pk`, `t`)"
    ),
}


@dataclass(frozen=True)
class Snippet:
    path: str  # relative to the repository
    line: int  # of the opening fence
    code: str  # dedented

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    def not_run(self) -> str | None:
        for (path, marker), reason in NOT_RUN.items():
            if path == self.path and marker in self.code:
                return reason
        return None


def python_snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(2) == "python":
                line = text.count("\n", 0, match.start()) + 1
                code = textwrap.dedent(match.group(3))
                found.append(Snippet(str(doc.relative_to(ROOT)), line, code))
    return found


SNIPPETS = python_snippets()
RUN = [s for s in SNIPPETS if s.not_run() is None]
NOT_RUN_SNIPPETS = [s for s in SNIPPETS if s.not_run() is not None]


class Calls:
    """Stand-ins for the application's functions: each call is recorded by name."""

    def __init__(self) -> None:
        self.made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._lock = threading.Lock()

    def stub(self, name: str, result: Any = None) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.made.append((name, args, kwargs))
            return result

        record.__name__ = name
        return record

    def count(self, name: str) -> int:
        return sum(1 for made, _, _ in self.made if made == name)


class Store:
    def __init__(self, calls: Calls) -> None:
        self.write = calls.stub("store.write")


class Response:
    def __init__(self, body: object = None, status: int = 200, headers: Any = None) -> None:
        self.body, self.status, self.headers = body, status, dict(headers or {})


def namespace(urls: list[str], rs: Redsync, calls: Calls) -> dict[str, Any]:
    """What a block may use without defining it (see the module docstring)."""
    return {
        "__name__": "docs_snippet",
        "urls": urls,
        "rs": rs,
        "Redsync": Redsync,
        "AsyncRedsync": AsyncRedsync,
        "alert": calls.stub("alert"),
        "build_report": calls.stub("build_report"),
        "render_report": calls.stub("render_report"),
        "transfer": calls.stub("transfer"),
        "compute": calls.stub("compute", 42),
        "save": calls.stub("save"),
        "store": Store(calls),
        "data": b"payload",
        "log": logging.getLogger("docs_snippet"),
        "get_redsync": lambda: rs,
        "Response": Response,
    }


def flask_app(urls: list[str], seeded: dict[str, Any]) -> Any:
    from flask import Flask

    app = Flask("docs_app")
    app.config.update(TESTING=True, REDSYNC_URLS=urls)
    return app


def flask_extension(urls: list[str], seeded: dict[str, Any]) -> Any:
    from redsync_flask import Redsync as FlaskRedsync

    return FlaskRedsync(seeded["app"])


# (file, text in the block) -> the user's own objects the block uses, built in this order:
# name -> build(urls, what was built before)
SEEDS: dict[tuple[str, str], dict[str, Callable[[list[str], dict[str, Any]], Any]]] = {
    ("README.md", "from redsync_flask import Redsync"): {"app": flask_app},
    ("docs/flask.md", "@app.errorhandler(LockBusy)"): {"app": flask_app},
    ("docs/flask.md", '@redsync.locked("jobs:reconcile"'): {
        "app": flask_app,
        "redsync": flask_extension,
    },
}


# --- a guard: nothing a block does may reach a non-loopback address ---------------------------

_guard = {"on": False}  # on while a block runs, for every thread it starts


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _guard["on"]:
        address = args[1]
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise PermissionError(f"a docs snippet tried to connect to {address!r}")


sys.addaudithook(_loopback_only)


def loopback(snippet: Snippet, urls: list[str]) -> str:
    code = DOC_URL.sub(lambda m: urls[int(m.group(1)) - 1], snippet.code)
    foreign = FOREIGN_ADDRESS.findall(code)
    assert not foreign, f"{snippet.id} names addresses the test cannot replace: {foreign}"
    return code


def run(snippet: Snippet, code: str, ns: dict[str, Any]) -> None:
    compiled = compile(
        code, f"<{snippet.id}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    _guard["on"] = True
    try:
        result = eval(compiled, ns)  # noqa: S307 - the repository's own documentation
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    finally:
        _guard["on"] = False


# --- checks after some blocks: (file, text in the block) -> check(namespace, calls) -----------


def _quick_start(ns: dict[str, Any], calls: Calls) -> None:
    rs: Redsync = ns["rs"]
    assert ns["send_invoice"](7) is None
    assert ns["render_pdf"](1) is None
    with rs.new_mutex("invoice:7"), pytest.raises(LockTaken):  # "busy -> LockTaken"
        ns["send_invoice"](7)
    assert calls.count("alert") == 0  # nothing was lost


def _eight_workers(ns: dict[str, Any], calls: Calls) -> None:
    threads = [threading.Thread(target=ns["worker"]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert calls.count("build_report") == 8


def _semaphore(ns: dict[str, Any], calls: Calls) -> None:
    assert calls.count("render_report") == 1
    assert calls.count("transfer") == 1


def _pause_check(ns: dict[str, Any], calls: Calls) -> None:
    assert [name for name, _, _ in calls.made] == ["compute", "save"]


def _fenced_write(ns: dict[str, Any], calls: Calls) -> None:
    [(_, _, kwargs)] = [made for made in calls.made if made[0] == "store.write"]
    assert isinstance(kwargs["fence"], int)
    assert kwargs["fence"] >= 1


def _decorator_sketch(ns: dict[str, Any], calls: Calls) -> None:
    rs: Redsync = ns["rs"]

    @ns["locked_view"]("pay:{order_id}")
    def pay(request: object, order_id: int) -> Response:
        return Response("paid")

    assert pay(object(), order_id=3).body == "paid"
    with rs.new_mutex("pay:3", expiry=20.0):
        busy = pay(object(), order_id=3)
    assert busy.status == 409
    assert 1 <= int(busy.headers["Retry-After"]) <= 20
    with pytest.raises(ConfigurationError, match="ttl"):
        ns["locked_view"]("x", ttl=3)  # "typos fail at import"


def _busy_post(app: Any, path: str, lock_name: str) -> Any:
    """POST ``path`` while a core mutex of the app's nodes holds ``lock_name``."""
    with app.extensions["redsync"].new_mutex(lock_name, expiry=20.0):
        return app.test_client().post(path)


def _flask_readme(ns: dict[str, Any], calls: Calls) -> None:
    app = ns["app"]
    ns["redsync"].init_app(app)  # "in create_app(): redsync.init_app(app)"
    busy = _busy_post(app, "/pay/7", "pay:7")
    assert busy.status_code == 409  # "busy: 409 + Retry-After, the body does not run"
    assert 1 <= int(busy.headers["Retry-After"]) <= 20


def _flask_quick_start(ns: dict[str, Any], calls: Calls) -> None:
    app = ns["app"] = ns["create_app"]()  # closed with the others
    assert len(app.extensions["redsync"].addresses) == 3
    busy = _busy_post(app, "/pay/42", "pay:42")
    assert busy.status_code == 409  # "answers 409 Conflict with Retry-After"
    assert 1 <= int(busy.headers["Retry-After"]) <= 20


def _flask_error_handler(ns: dict[str, Any], calls: Calls) -> None:
    from redsync_flask import Redsync as FlaskRedsync

    app = ns["app"]
    redsync = FlaskRedsync(app)

    @app.post("/export/<int:id>")
    @redsync.locked("export:{id}")
    def export(id: int) -> str:
        return "exported"

    busy = _busy_post(app, "/export/1", "export:1")
    assert busy.status_code == 409
    assert busy.get_json() == {"error": "busy", "retry_after": int(busy.headers["Retry-After"])}


def _flask_job(ns: dict[str, Any], calls: Calls) -> None:
    app = ns["app"]
    warnings: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append  # type: ignore[method-assign]
    logger = logging.getLogger("redsync.flask")
    logger.addHandler(handler)
    try:
        with app.app_context():
            assert ns["reconcile"]() is None
            assert warnings == []
            with app.extensions["redsync"].new_mutex("jobs:reconcile"):
                assert ns["reconcile"]() is None  # "the others log a WARNING and return None"
    finally:
        logger.removeHandler(handler)
    assert len(warnings) == 1
    assert "jobs:reconcile" in warnings[0].getMessage()


FOLLOW_UP: dict[tuple[str, str], Callable[[dict[str, Any], Calls], None]] = {
    ("README.md", "def send_invoice"): _quick_start,
    ("README.md", "def worker():"): _eight_workers,
    ("README.md", "rs.new_semaphore("): _semaphore,
    ("docs/safety.md", "if m.remaining < 2.0:"): _pause_check,
    ("docs/safety.md", "store.write(data, fence=m.token)"): _fenced_write,
    ("docs/api.md", "def locked_view("): _decorator_sketch,
    ("README.md", "from redsync_flask import Redsync"): _flask_readme,
    ("docs/flask.md", "def create_app():"): _flask_quick_start,
    ("docs/flask.md", "@app.errorhandler(LockBusy)"): _flask_error_handler,
    ("docs/flask.md", '@redsync.locked("jobs:reconcile"'): _flask_job,
}


@pytest.fixture
def undo_global_state() -> Iterator[None]:
    """Remove the listeners a block added and undo ``otel.instrument()``."""
    before = hooks_registry.listeners
    yield
    for listener in hooks_registry.listeners:
        if listener not in before:
            hooks_registry.remove_listener(listener)
    if "redsync_core.otel" in sys.modules:
        sys.modules["redsync_core.otel"].uninstrument()


def close_all(ns: dict[str, Any]) -> None:
    for value in ns.values():
        value = getattr(value, "extensions", {}).get("redsync", value)  # a Flask app's
        if isinstance(value, Redsync):
            value.close()
        elif isinstance(value, AsyncRedsync):
            asyncio.run(value.close())


@pytest.mark.usefixtures("undo_global_state")
@pytest.mark.parametrize("snippet", RUN, ids=[s.id for s in RUN])
def test_snippet_runs(snippet: Snippet, redis_nodes: list[RedisServer]) -> None:
    urls = [server.url for server in redis_nodes]
    calls = Calls()
    rs = Redsync(urls)
    ns = namespace(urls, rs, calls)
    try:
        for (path, marker), seeds in SEEDS.items():
            if path == snippet.path and marker in snippet.code:
                for name, build in seeds.items():
                    ns[name] = build(urls, ns)
        run(snippet, loopback(snippet, urls), ns)
        for (path, marker), check in FOLLOW_UP.items():
            if path == snippet.path and marker in snippet.code:
                check(ns, calls)
    finally:
        close_all(ns)
        rs.close()


def defined_names(module: str) -> set[str]:
    """The top-level names of ``module``'s source, without importing it (Django needs settings)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    if spec.submodule_search_locations:  # a package: its submodules are importable names too
        for location in spec.submodule_search_locations:
            names.update(
                p.stem for p in Path(location).iterdir() if p.suffix == ".py" or p.is_dir()
            )
    return names


@pytest.mark.parametrize("snippet", NOT_RUN_SNIPPETS, ids=[s.id for s in NOT_RUN_SNIPPETS])
def test_snippet_not_run_still_compiles_and_names_what_exists(snippet: Snippet) -> None:
    tree = ast.parse(snippet.code, f"<{snippet.id}>")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("redsync_"):
            module = node.module or ""
            missing = {alias.name for alias in node.names} - defined_names(module)
            assert not missing, f"{snippet.id}: {module} has no {sorted(missing)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("redsync_"):
                    assert importlib.util.find_spec(alias.name), f"{snippet.id}: no {alias.name}"


def test_every_not_run_entry_names_one_block() -> None:
    for path, marker in NOT_RUN:
        matches = [s.id for s in SNIPPETS if s.path == path and marker in s.code]
        assert len(matches) == 1, f"NOT_RUN entry {path!r}, {marker!r} matches {matches}"
    for path, marker in [*FOLLOW_UP, *SEEDS]:
        matches = [s.id for s in RUN if s.path == path and marker in s.code]
        assert len(matches) == 1, f"FOLLOW_UP/SEEDS entry {path!r}, {marker!r} matches {matches}"


def test_most_blocks_run() -> None:
    """The docs are mostly runnable: a new fragment needs a reason in NOT_RUN, not a habit."""
    assert len(SNIPPETS) >= 25
    assert len(RUN) >= 15


def test_the_guard_refuses_non_loopback_connections() -> None:
    """The audit hook stops a block's connection before any packet leaves (TEST-NET-1 address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _guard["on"] = True
    try:
        with pytest.raises(PermissionError, match=r"192\.0\.2\.1"):
            sock.connect(("192.0.2.1", 6379))
    finally:
        _guard["on"] = False
        sock.close()
