"""``manage.py rebuild_search_index``: a cron job that must never overlap with itself."""

import time
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from redsync_django.management import LockedCommand


class Command(LockedCommand):
    help = "Rebuild the search index (runs under the lock 'manage:rebuild_search_index')."
    lock_expiry = 60.0  # seconds; renewed while handle() runs, so a crash frees it within 60 s

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=settings.DEMO_WORK_SECONDS)

    def handle(self, *args: Any, **options: Any) -> None:
        time.sleep(options["seconds"])
        self.stdout.write("Search index rebuilt.")
