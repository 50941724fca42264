"""WSGI entry point (``gunicorn django_site.wsgi``; ``--preload`` is safe: each worker
builds its own Redis connections on first use)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
application = get_wsgi_application()
