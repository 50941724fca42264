"""Settings of the redsync example site: three local Redis nodes from ``REDSYNC_URLS``."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "redsync-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["redsync_django", "lockdemo"]
# No sessions, cookies or logins in this demo, hence no CSRF middleware.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"
ASGI_APPLICATION = "django_site.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}  # the demo stores nothing
USE_TZ = True

# Three independent Redis masters; comma-separated in REDSYNC_URLS (see README.md).
REDSYNC = {
    "URLS": os.environ.get(
        "REDSYNC_URLS",
        "redis://127.0.0.1:7001/0,redis://127.0.0.1:7002/0,redis://127.0.0.1:7003/0",
    ).split(","),
    "CLIENT_OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
    "KEY_PREFIX": "django_site:",
    "OPTIONS": {"expiry": 30.0, "auto_extend": True},
    "BUSY_STATUS": 409,
}

# How long each demo view and command pretends to work, so two requests can overlap.
DEMO_WORK_SECONDS = float(os.environ.get("DEMO_WORK_SECONDS", "0"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"redsync": {"handlers": ["console"], "level": "INFO"}},
}
