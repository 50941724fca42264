"""System checks for ``settings.REDSYNC`` (``manage.py check``; tag ``redsync``).

The default checks do no network I/O. ``manage.py check --deploy`` also pings the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning, register

from redsync_core.adapters import node_count_warning

from . import conf

__all__ = ["check_quorum_reachable", "check_settings"]

TAG = "redsync"


@register(TAG)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report redsync.E001-E003 for invalid settings, W001/W002 for a weak node count."""
    try:
        config = conf.read_config()
        conf.build_redsync(config).close()  # builds clients only: rejects bad URLs, no I/O
    except conf.SettingsError as exc:
        return [Error(exc.message, hint=exc.hint or None, id=exc.check_id)]
    count = len(config.urls)
    weakness = node_count_warning(count)
    if weakness is None:
        return []
    return [
        Warning(
            f'settings.REDSYNC["URLS"] has {weakness}',
            id="redsync.W001" if count == 1 else "redsync.W002",
        )
    ]


@register(TAG, deploy=True)
def check_quorum_reachable(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Ping every node (``check --deploy``); redsync.E004 when a quorum does not answer."""
    try:
        rs = conf.get_redsync()
    except conf.SettingsError:
        return []  # check_settings reports it
    report = rs.ping()
    if report.ok:
        return []
    failures = "; ".join(f"{n.address}: {n.error}" for n in report.nodes if not n.ok)
    return [
        Error(
            f"Only {report.reachable} of {len(report.nodes)} redsync nodes answered a ping; "
            f"{report.quorum} are needed to take any lock ({failures}).",
            hint='Start the nodes, or fix settings.REDSYNC["URLS"] / ["CLIENT_OPTIONS"].',
            id="redsync.E004",
        )
    ]
