"""The ``redsync_django`` Django app: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class RedsyncConfig(AppConfig):
    """``INSTALLED_APPS += ["redsync_django"]``."""

    name = "redsync_django"
    label = "redsync"
    verbose_name = "redsync"
    default = True

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the checks)
