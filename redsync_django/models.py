"""``Lock``: a model without a table, for the admin page's permissions and its index entry.

Locks live on the Redis nodes, never in the database. The model is unmanaged, so no migration
creates a table for it; Django still creates its content type and the permissions
``redsync.view_lock`` (see the page) and ``redsync.release_lock`` (force-release from it) when
``migrate`` runs, as for any model.
"""

from __future__ import annotations

from django.db import models

__all__ = ["Lock"]


class Lock(models.Model):
    """A distributed lock, listed from the Redis nodes by the admin page (never queried)."""

    name: models.CharField[str, str] = models.CharField(max_length=1024, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = (("release_lock", "Can force-release distributed locks"),)
        verbose_name = "distributed lock"
        verbose_name_plural = "distributed locks"

    def __str__(self) -> str:
        return str(self.name)
