"""Settings of the redsync example site: three local Redis nodes from ``REDSYNC_URLS``."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "redsync-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",  # for the "Distributed locks" page of redsync_django
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "redsync_django",
    "lockdemo",
]
# The demo views are an API for curl, hence no CSRF middleware; the admin checks CSRF itself.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"
ASGI_APPLICATION = "django_site.asgi.application"
# The views store nothing; the database holds the admin's users, sessions and log.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
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
