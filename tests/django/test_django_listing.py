"""``manage.py redsync ls`` and ``release --pattern``, against real nodes."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

VALUES = {"test:jobs:1": "value-one-s3cret", "test:jobs:2": "task-7:1:t0ken-s3cret"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("redsync", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def clients(redsync_settings, redis_nodes):
    clients = [server.client() for server in redis_nodes]
    for client in clients:
        for key, value in VALUES.items():
            client.set(key, value, px=30_000)
        client.set("test:other", "x", px=30_000)
        client.lpush("test:queue", "not a lock")
    yield clients
    for client in clients:
        client.close()


def test_ls_lists_the_locks_under_key_prefix_without_values(clients):
    out = run("ls", "jobs:*")
    lines = out.splitlines()
    assert lines[0].startswith("jobs:1: held, sha256:")
    assert lines[0].endswith("on 3 of 3 nodes")
    assert lines[1].startswith("jobs:2: held, task task-7,")
    assert lines[2] == "2 lock(s) matching 'jobs:*'"
    assert "s3cret" not in out


def test_ls_json_counts_what_is_not_a_lock(clients):
    document = json.loads(run("ls", "--json"))
    assert [lock["name"] for lock in document["locks"]] == ["jobs:1", "jobs:2", "other"]
    assert document["skipped"] == 1
    assert document["partial"] is False


def test_ls_without_a_quorum_of_nodes_fails(clients, redis_nodes):
    redis_nodes[0].kill()
    redis_nodes[1].kill()
    with pytest.raises(CommandError, match="Fewer than 2 of 3 nodes"):
        run("ls")


def test_release_pattern_needs_force_and_confirmation(clients):
    with pytest.raises(CommandError, match="--force"):
        run("release", "--pattern", "jobs:*")
    with pytest.raises(CommandError, match="--yes"):
        run("release", "--pattern", "jobs:*", "--force")
    assert [client.exists(*VALUES) for client in clients] == [2, 2, 2]


def test_release_pattern_yes_deletes_only_the_matching_locks(clients):
    out = run("release", "--pattern", "jobs:*", "--force", "--yes")
    assert "Released 'jobs:1': deleted on 3 of 3 nodes." in out
    assert "s3cret" not in out
    assert [client.exists(*VALUES) for client in clients] == [0, 0, 0]
    assert [client.exists("test:other", "test:queue") for client in clients] == [2, 2, 2]


def test_listing_options_are_checked(clients):
    with pytest.raises(CommandError, match="page_size=0"):
        run("ls", "--page-size", "0")
    with pytest.raises(CommandError, match="timeout=-1"):
        run("release", "--pattern", "*", "--force", "--timeout", "-1")
    assert len(json.loads(run("ls", "--json", "--page-size", "1", "--timeout", "5"))["locks"]) == 3


def test_release_wants_a_name_or_a_pattern(clients):
    with pytest.raises(CommandError, match="NAME"):
        run("release", "--force")
    with pytest.raises(CommandError, match="not both"):
        run("release", "jobs:1", "--pattern", "jobs:*", "--force")
