"""Configure Django for tests/django (tests/examples/test_django_site.py does the same).

Settings are the example site's (``example_projects/django_site``), so its app, views and
commands are installed; every test then points ``REDSYNC`` at its own real redis-server
nodes with ``override_settings``. ``settings.configure`` (not DJANGO_SETTINGS_MODULE) keeps
the other test directories of the session untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.test import override_settings

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "example_projects" / "django_site"
if str(EXAMPLE_SITE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_SITE))


@pytest.fixture(scope="session", autouse=True)
def _django_configured():
    """Configure Django when these tests start, not at collection.

    Configuring at import would make pytest-django call ``setup_test_environment()`` for the
    whole session, and the in-process pytester sessions of tests/testing would then fail
    calling it a second time.
    """
    if not settings.configured:
        from django_site import settings as site_settings

        names = [name for name in dir(site_settings) if name.isupper()]
        settings.configure(**{name: getattr(site_settings, name) for name in names})
        django.setup()


@pytest.fixture
def redsync_settings(redis_nodes):
    """``REDSYNC`` for three fresh redis-server nodes; yields the settings dict."""
    config = {
        "URLS": [server.url for server in redis_nodes],
        "CLIENT_OPTIONS": {"socket_timeout": 2.0},
        "KEY_PREFIX": "test:",
    }
    with override_settings(REDSYNC=config):
        yield config


@pytest.fixture
def rs(redsync_settings):
    """The adapter's core Redsync for ``redsync_settings`` (to hold locks from the test)."""
    from redsync_django import get_redsync

    return get_redsync()


@pytest.fixture
def hold(rs):
    """``hold(name, expiry=30.0)``: take a lock from the test as "another process" would."""
    held = []

    def _hold(name: str, expiry: float = 30.0):
        mutex = rs.new_mutex(name, expiry=expiry, auto_extend=False)
        mutex.lock()
        held.append(mutex)
        return mutex

    yield _hold
    for mutex in held:
        mutex.unlock()


@pytest.fixture(scope="session")
def _test_databases(_django_configured):
    """Create the test database once (migrations: auth, admin, redsync's permissions...).

    pytest-django's database fixtures cannot serve these tests: Django is configured when the
    first test starts (see above), after pytest-django decided that it is not in use.
    """
    from django.test.utils import setup_databases, teardown_databases

    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    teardown_databases(old_config, verbosity=0)


@pytest.fixture
def database(_test_databases):
    """The test database; what a test writes is rolled back at its end (as in TestCase)."""
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)
