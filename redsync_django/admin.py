"""The "Distributed locks" admin page: every lock under ``KEY_PREFIX``, and force-release.

Registered on ``django.contrib.admin.site`` (or the project's default site). On another
``AdminSite``, register it yourself: ``site.register(Lock, LockAdmin)``. It needs no URL
include beyond the site's own ``urls``.

- ``redsync.view_lock`` shows the page: each lock's verdict, holder (the Celery task id, or a
  fingerprint of the value; never the value), remaining TTL and nodes. ``?q=orders:*`` filters.
- ``redsync.release_lock`` adds checkboxes and a button. Releasing is a POST (CSRF-checked by
  the admin), then a confirmation page, then a second POST that deletes each lock where it
  still holds what the operator confirmed, and writes one admin ``LogEntry`` (deletion) a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from redsync_core import LockInfo

from .conf import get_redsync
from .models import Lock

__all__ = ["LockAdmin"]

#: Seconds the page's listing may take; a slower node is reported as not listed to the end.
LIST_TIMEOUT = 5.0


@dataclass(frozen=True)
class LockRow:
    """One lock as the page shows it (no lock value in here)."""

    name: str
    verdict: str
    holder: str  # "task <id>" for a Celery task, else a fingerprint of the value
    remaining: str
    nodes: str
    errors: tuple[str, ...]
    seen: str  # what the operator saw of the holder, checked again before deleting


def lock_row(info: LockInfo) -> LockRow:
    """Describe ``info`` for the page: holder as task id or fingerprint, TTL, nodes."""
    total = len(info.nodes)
    return LockRow(
        name=info.name,
        verdict=info.verdict,
        holder=info.holder_label or "no holder with a quorum",
        remaining="-" if info.remaining is None else f"{info.remaining:.1f} s",
        nodes=f"{info.held_on} of {total}",
        errors=tuple(f"{n.address}: {n.error}" for n in info.nodes if n.error is not None),
        seen=info.holder_digest or "-",
    )


def _has_perm(request: HttpRequest, permission: str) -> bool:
    # The admin's users have has_perm (the admin requires it); the stubs' union does not say so.
    user: Any = request.user
    return bool(user.has_perm(permission))


@admin.register(Lock)
class LockAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # django-stubs: generic in Model
    """Lists the locks on the Redis nodes (not the database) and force-releases them."""

    change_list_template = "admin/redsync/lock/change_list.html"
    release_confirmation_template = "admin/redsync/lock/release_confirmation.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _has_perm(request, f"{self.opts.app_label}.view_{self.opts.model_name}")

    def has_release_permission(self, request: HttpRequest) -> bool:
        return _has_perm(request, f"{self.opts.app_label}.release_{self.opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name=f"{prefix}_changelist"),
            path("release/", view(self.release_view), name=f"{prefix}_release"),
        ]

    def _url(self, what: str) -> str:
        name = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{what}"
        return reverse(name, current_app=self.admin_site.name)

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "changelist_url": self._url("changelist"),
            "release_url": self._url("release"),
            **extra,
        }

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """List the locks matching ``?q=`` (default every lock under ``KEY_PREFIX``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        pattern = request.GET.get("q", "").strip() or "*"
        rs = get_redsync()
        listing = rs.list_locks(pattern, timeout=LIST_TIMEOUT)
        for address, reason in listing.incomplete:
            messages.warning(
                request,
                f"Node {address} was not listed to the end ({reason}): locks held "
                "only there are missing, and some verdicts may say unknown.",
            )
        context = self._context(
            request,
            "Distributed locks",
            locks=[lock_row(info) for info in listing],
            pattern="" if pattern == "*" else pattern,
            skipped=listing.skipped,
            key_prefix=rs.key_prefix,
            node_count=len(rs.nodes),
            quorum=rs.quorum,
            can_release=self.has_release_permission(request),
            **(extra_context or {}),
        )
        return TemplateResponse(request, self.change_list_template, context)

    def release_view(self, request: HttpRequest) -> HttpResponse:
        """Confirm (first POST), then force-release (POST with ``confirm``) the chosen locks."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_view_permission(request) and self.has_release_permission(request)):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        names = [name for name in request.POST.getlist("name") if name]
        if not names:
            messages.warning(request, "Select the locks to release first.")
            return HttpResponseRedirect(self._url("changelist"))
        rs = get_redsync()
        if "confirm" not in request.POST:
            rows = [lock_row(rs.inspect(name)) for name in names]
            context = self._context(request, "Release distributed locks?", locks=rows)
            return TemplateResponse(request, self.release_confirmation_template, context)
        seen = request.POST.getlist("seen")
        if len(seen) != len(names):
            raise PermissionDenied  # a tampered form: release nothing
        released, kept = [], []
        for name, confirmed in zip(names, seen, strict=True):
            info = rs.inspect(name)
            if (info.holder_digest or "-") != confirmed:
                kept.append(name)  # it changed hands since the operator confirmed
                continue
            deleted = rs.release_listed(info)
            self._log(request, info, deleted)
            released.append(name)
        if released:
            messages.success(request, f"Released {len(released)} lock(s): {', '.join(released)}.")
        if kept:
            messages.warning(
                request, f"Kept {', '.join(kept)}: the holder changed since you confirmed."
            )
        query = request.POST.get("q", "")
        suffix = "?" + urlencode({"q": query}) if query else ""
        return HttpResponseRedirect(self._url("changelist") + suffix)

    def _log(self, request: HttpRequest, info: LockInfo, deleted: int) -> None:
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type_id=ContentType.objects.get_for_model(Lock, for_concrete_model=False).pk,
            object_id=info.name,
            object_repr=info.name[:200],
            action_flag=DELETION,
            change_message=(
                f"Force-released (key {info.key!r}, verdict {info.verdict}, holder "
                f"{info.holder_label or 'none'}): deleted on {deleted} of "
                f"{len(info.nodes)} nodes."
            ),
        )
