"""redsync_django: Redlock locks for Django views, functions, blocks and management commands.

``INSTALLED_APPS += ["redsync_django"]`` and ``REDSYNC = {"URLS": [...]}`` in the settings; see
``docs/django.md``. Everything here translates settings into ``redsync_core`` objects.
"""

from __future__ import annotations

from .conf import get_redsync
from .locks import DistributedLock, distributed_lock

__all__ = ["DistributedLock", "distributed_lock", "get_redsync"]
