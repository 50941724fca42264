"""URLs of the admin tests (``pytest.mark.urls("dl_adminsite")``): Django's default admin site,
and a custom ``AdminSite`` with the "Distributed locks" page registered by hand.

A module of its own: the admin's models can only be imported once Django is set up, which
happens when the first test starts (see conftest.py), after the test modules are collected.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from redsync_django.admin import LockAdmin
from redsync_django.models import Lock

ops_site = admin.AdminSite(name="ops")  # a custom AdminSite, as a project may have
ops_site.register(Lock, LockAdmin)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/", ops_site.urls),
]
