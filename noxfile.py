"""The compatibility matrix: Python versions, dependency floors and redis-py majors (``make matrix``).

Sessions (``nox -l`` lists them; ``nox -s NAME -- PYTEST_ARGS`` runs one with other pytest args):

``tests-3.10`` ... ``tests-3.13``
    The whole suite on each supported Python with the newest release of every dependency.
``floors``
    The whole suite on the oldest Python with the oldest release each extra allows: redis-py 5.0.1,
    Django 4.2, Celery 5.3, Flask 2.3, hiredis 2.0, valkey-py 6.0. It is the session that
    catches a redis-py internal the transport relies on (``conn._sock``, the parser hooks, the
    connect callback) that old releases lack.
``redis_major(redis='5')`` ``(redis='6')`` ``(redis='7')``
    The whole suite with the newest release of each redis-py major between the floor and the
    newest (the newest major runs in ``tests-*``); with redis-py 5, all but the suites that wait
    for Celery results (see ``CELERY_SUITES`` for why).

Every other session runs the whole suite. Fixtures start the server named by ``REDSYNC_TEST_SERVER``
(default ``redis-server`` on PATH), so ``REDSYNC_TEST_SERVER=valkey-server nox`` runs the
matrix against Valkey. The virtual environments live under ``.nox/`` (git-ignored).

Interpreters are looked up on PATH (``python3.10`` ...); versions installed with pyenv are found
even when ``pyenv global`` selects another one. Elsewhere, install the missing interpreters
(``pyenv install 3.10 3.12 3.13``, ``uv python install``, or the distribution's packages).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
OLDEST_PYTHON = PYTHONS[0]
EXTRAS = ".[test,valkey]"

#: The oldest release each dependency declared in pyproject.toml allows.
FLOORS = [
    "redis==5.0.1",
    "django==4.2",
    "celery==5.3.0",
    "flask[async]==2.3.0",
    "hiredis==2.0.0",
    "valkey==6.0.0",
    # Their own dependencies at the oldest release they allow, as the newest ones break them:
    "kombu==5.3.0",  # see KOMBU_FOR_REDIS_5
    "werkzeug==2.3.0",  # Werkzeug 3 dropped werkzeug.__version__, read by Flask 2.3.0's test client
]

#: redis-py majors between the floor (5.0.1) and the newest release (run by ``tests-*``).
REDIS_MAJORS = ["5", "6", "7"]

#: kombu 5.7 (Celery's transport library) refuses redis-py < 6.1 for the Redis broker the Celery
#: suites use; sessions on redis-py 5 take the last kombu before it.
KOMBU_FOR_REDIS_5 = "kombu<5.7"

#: So those sessions get Celery 5.6, whose Redis result backend can deadlock the test process:
#: the garbage collector runs AsyncResult.__del__ while redis-py (5.3 on, not 5.0) holds its
#: PubSub lock, and __del__ takes that lock again (fixed in Celery 5.7). They leave out the suites
#: that wait for Celery results; the Celery adapter's locking is the core's, tested there.
CELERY_SUITES = ["tests/celery", "tests/examples/test_celery_app.py"]

nox.options.sessions = ["tests", "floors", "redis_major"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True


def _find_pyenv_interpreters() -> None:
    """Put every pyenv-installed Python first on PATH: ``python3.X`` then resolves to it, not to
    a pyenv shim that refuses versions ``pyenv global`` does not select."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    bins = sorted(str(path) for path in root.glob("versions/3.*/bin") if path.is_dir())
    if bins:
        os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_find_pyenv_interpreters()


REPORTED = ["redis", "valkey", "hiredis", "django", "celery", "kombu", "flask", "werkzeug"]


def _pytest(session: nox.Session, leave_out: list[str] | None = None) -> None:
    """Print the versions under test, then run pytest: the whole suite but ``leave_out``, unless
    the command line gives other arguments."""
    session.run(
        "python",
        "-c",
        "import sys, importlib.metadata as m; "
        f"print('Python', sys.version.split()[0], *(f'{{d}} {{m.version(d)}}' for d in {REPORTED}))",
    )
    # As `make test` runs it: `python -m` puts the checkout on sys.path (tests import benchmarks).
    ignored = [f"--ignore={path}" for path in leave_out or []]
    session.run("python", "-m", "pytest", *(session.posargs or ["-q", *ignored]))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the whole suite with the newest release of every dependency."""
    session.install("--upgrade", "-e", EXTRAS)
    _pytest(session)


@nox.session(python=OLDEST_PYTHON)
def floors(session: nox.Session) -> None:
    """Run the whole suite on the oldest Python with the oldest allowed dependencies."""
    session.install("-e", EXTRAS, *FLOORS)
    _pytest(session)


@nox.session(python="3.12")
@nox.parametrize("redis", REDIS_MAJORS)
def redis_major(session: nox.Session, redis: str) -> None:
    """Run the whole suite with the newest release of one redis-py major."""
    if redis == "5":
        session.install("-e", EXTRAS, "redis~=5.0", KOMBU_FOR_REDIS_5)
        _pytest(session, leave_out=CELERY_SUITES)
    else:
        session.install("-e", EXTRAS, f"redis~={redis}.0")
        _pytest(session)
