"""ASGI entry point (``uvicorn django_site.asgi:application``); async views lock without
blocking the event loop."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
application = get_asgi_application()
