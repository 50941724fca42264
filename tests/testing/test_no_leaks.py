"""Processes started through the test helpers die with the process that started them, even when
it is SIGKILLed and runs no cleanup at all (Linux: the kernel's parent-death signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from redsync_core.testing import child_process, wait_child

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux only"
)

INNER_ARGS = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:django")
STARTUP_TIMEOUT = 90.0  # seconds the inner process gets to start its servers on a loaded machine
GONE_WITHIN = 5.0  # seconds the kernel and init get to kill and reap the orphans


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for_file(path: Path, proc: subprocess.Popen[bytes]) -> str:
    """Return the text of ``path`` once it exists; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not path.exists():
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"the owner exited with {proc.returncode} first:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path.name} after {STARTUP_TIMEOUT} s")
        time.sleep(0.05)
    return path.read_text()


def kill_and_expect_gone(owner: subprocess.Popen[bytes], pids: list[int]) -> None:
    assert pids
    assert all(alive(pid) for pid in pids)
    owner.kill()
    owner.wait(timeout=10)
    deadline = time.monotonic() + GONE_WITHIN
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            left = [pid for pid in pids if alive(pid)]
            for pid in left:  # do not leak them from this test either
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"still running {GONE_WITHIN} s after their owner was killed: {left}")
        time.sleep(0.05)


def test_servers_of_a_killed_pytest_session_die_with_it(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    (tmp_path / "test_hold.py").write_text(
        textwrap.dedent(
            f"""
            import os, time

            def test_hold_servers(redis_nodes5, redis_cluster, redis_servers):
                (private,) = redis_servers(1, password="pw")
                servers = [*redis_nodes5, *redis_cluster.servers, private]
                pids = " ".join(str(server.pid) for server in servers)
                with open({str(pids_file) + ".tmp"!r}, "w") as out:
                    out.write(pids)
                os.rename({str(pids_file) + ".tmp"!r}, {str(pids_file)!r})
                time.sleep(600)
            """
        )
    )
    owner = child_process(
        [sys.executable, "-m", "pytest", "-q", "-s", *INNER_ARGS, "test_hold.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        pids = [int(pid) for pid in wait_for_file(pids_file, owner).split()]
        assert len(pids) == 5 + 3 + 1
        kill_and_expect_gone(owner, pids)
    finally:
        owner.kill()
        owner.wait(timeout=10)


OWNER_SCRIPT = """
import os, sys, threading, time
from redsync_core.testing import RedisServer, RedisServerGroup

group = RedisServerGroup(2)
group.start()
# A server started from a thread that then ends must live on: the kernel ties the parent-death
# signal to the forking thread, so the helpers fork from a thread that lives as long as the process.
from_thread = []
thread = threading.Thread(target=lambda: from_thread.append(RedisServer().__enter__()))
thread.start()
thread.join(timeout=60)
time.sleep(0.5)
assert from_thread[0].running, "the server started from the ended thread died with it"
pids = [server.pid for server in group] + [from_thread[0].pid]
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(" ".join(map(str, pids)))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def test_servers_started_from_an_ended_thread_live_until_their_process_is_killed(
    tmp_path: Path,
) -> None:
    pids_file = tmp_path / "pids"
    owner = child_process(
        [sys.executable, "-c", OWNER_SCRIPT, str(pids_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        pids = [int(pid) for pid in wait_for_file(pids_file, owner).split()]
        assert len(pids) == 3
        kill_and_expect_gone(owner, pids)
    finally:
        owner.kill()
        owner.wait(timeout=10)


CELERY_OWNER_SCRIPT = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from rs_celery_workers import Worker
from redsync_core.testing import RedisServer

broker = RedisServer()
broker.start()
env = {"RSC_REDIS": broker.url.rsplit("/", 1)[0], "RSC_NODES": broker.url, "RSC_QUEUE": "q-leak"}
worker = Worker("rs_celery_testapp", "prefork", 2, "q-leak", env=env, pythonpath=[sys.argv[2]])
worker.wait_ready()
with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as children:
    pool = children.read().split()
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(" ".join(map(str, [broker.pid, worker.pid, *pool])))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


@pytest.mark.slow
def test_celery_workers_of_a_killed_test_process_die_with_it(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    celery_tests = Path(__file__).parents[1] / "celery"
    owner = child_process(
        [sys.executable, "-c", CELERY_OWNER_SCRIPT, str(pids_file), str(celery_tests)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the killed owner's worker log lands here
    )
    try:
        pids = [int(pid) for pid in wait_for_file(pids_file, owner).split()]
        assert len(pids) == 1 + 1 + 2  # the broker, the worker and its 2 prefork children
        kill_and_expect_gone(owner, pids)
    finally:
        owner.kill()
        owner.wait(timeout=10)


def test_wait_child_returns_the_exit_code_or_kills_after_the_timeout() -> None:
    quick = os.fork()
    if quick == 0:
        os._exit(3)
    assert wait_child(quick, timeout=30) == 3

    stuck = os.fork()
    if stuck == 0:
        time.sleep(60)
        os._exit(0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"child {stuck} still ran after 0.2 s"):
        wait_child(stuck, timeout=0.2)
    assert time.monotonic() - started < 30  # far below the child's 60 s sleep
    assert not alive(stuck)


HOLDER_SCRIPT = """
import os, sys, time
from redsync_core.testing import RedisServer

server = RedisServer()
server.start()
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(os.path.dirname(server.log_path))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def test_files_left_by_a_killed_owner_are_removed_by_the_next_one(tmp_path: Path) -> None:
    # Two owners: one is SIGKILLed (its server dies, its temporary directory stays behind), the
    # other lives on. The next process that starts a server removes the dead owner's directory
    # and leaves the live owner's alone.
    owners = []
    try:
        for name in ("killed", "alive"):
            owners.append(
                child_process(
                    [sys.executable, "-c", HOLDER_SCRIPT, str(tmp_path / name)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        killed_dir, alive_dir = (
            Path(wait_for_file(tmp_path / name, owner))
            for name, owner in zip(("killed", "alive"), owners, strict=True)
        )
        owners[0].kill()
        owners[0].wait(timeout=10)
        assert killed_dir.is_dir()  # SIGKILL ran no cleanup

        next_one = "from redsync_core.testing import RedisServer\nwith RedisServer(): pass\n"
        done = subprocess.run(
            [sys.executable, "-c", next_one], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert not killed_dir.exists()
        assert alive_dir.is_dir()
        assert (alive_dir / "redis.conf").is_file()
    finally:
        for owner in owners:
            owner.kill()
            owner.wait(timeout=10)
