"""Where each contender runs: in our own interpreter, or in a peer's own ``.venvs/<env>``.

Every peer library gets its own virtualenv, created here with ``python -m venv`` and pip from
PyPI, for three reasons: ``redlock-ng`` and ``redlock-py`` both install a top-level ``redlock``
module; ``redlock-ng`` pins ``redis<6``; and the project's ``.venv`` stays as ``make`` built it.
Each virtualenv gets exactly the redis-py and hiredis versions of the interpreter running the
benchmark, so every contender parses replies with the same client code (hiredis changes
redis-py's parser, and redis-py 5 is about 25 % cheaper per command than 8). Packages whose
declared pins would pull in another redis-py are installed ``--no-deps``, with their other
dependencies listed here by hand.

A peer whose virtualenv cannot be built is reported with pip's last lines, never hidden.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENVS", "REPO", "EnvStatus", "PeerEnv", "prepare"]

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".venvs"
_STAMP = ".bench-stamp"
_PIP_TAIL_LINES = 8
_PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class PeerEnv:
    """One peer's virtualenv: what pip installs into it."""

    name: str
    requirements: tuple[str, ...]
    no_deps: tuple[str, ...] = ()  # installed with --no-deps (their pins would move redis-py)
    note: str = ""

    def python(self) -> Path:
        return VENVS / self.name / "bin" / "python"

    def packages(self) -> set[str]:
        """The distribution names this env was made for (``pottery`` from ``pottery==3.0.1``)."""
        return {re.split(r"[<>=!~\[]", req)[0] for req in (*self.requirements, *self.no_deps)}


def _client_pins() -> tuple[str, ...]:
    """``redis==X`` and ``hiredis==Y`` as installed in this interpreter (hiredis if present)."""
    pins = [f"redis=={importlib.metadata.version('redis')}"]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        pins.append(f"hiredis=={importlib.metadata.version('hiredis')}")
    return tuple(pins)


ENVS: dict[str, PeerEnv] = {
    env.name: env
    for env in (
        PeerEnv("pottery", ("pottery==3.0.1",)),
        PeerEnv("python-redis-lock", ("python-redis-lock==4.0.1",)),
        PeerEnv(
            "redlock-ng",
            ("pydantic>=2.5,<3",),
            no_deps=("redlock-ng==2.0.4",),
            note="declares redis<6,>=5 and urllib3<2; installed --no-deps on our redis-py",
        ),
        PeerEnv(
            "redlock-py",
            ("redlock-py==1.0.8",),
            note="own env: its import name `redlock` clashes with redlock-ng",
        ),
        PeerEnv(
            "aioredlock",
            ("aioredlock==0.7.3",),
            note="uses aioredis 1.3.1 (hiredis parser), not redis-py",
        ),
    )
}


@dataclass
class EnvStatus:
    """The outcome of preparing one peer's virtualenv."""

    env: PeerEnv
    ok: bool
    python: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _stamp(env: PeerEnv) -> str:
    spec = {"req": env.requirements, "nodeps": env.no_deps, "pins": _client_pins()}
    spec["python"] = sys.version  # type: ignore[assignment]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _run(cmd: list[str], log: list[str]) -> None:
    log.append("$ " + " ".join(cmd))
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=_PIP_TIMEOUT_S,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    log.extend((proc.stdout + proc.stderr).splitlines())
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode}")


def _versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {item["name"].lower(): item["version"] for item in json.loads(out)}


def prepare(env: PeerEnv, *, progress: bool = True) -> EnvStatus:
    """Create (or reuse) the virtualenv of ``env``; report failures instead of raising."""
    target = VENVS / env.name
    stamp = _stamp(env)
    python = env.python()
    stamp_file = target / _STAMP
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return EnvStatus(env, True, str(python), _versions(python))
    if progress:
        print(f"  building .venvs/{env.name} (python -m venv + pip) ...", flush=True)
    log: list[str] = []
    try:
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", "--clear", str(target)], log)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        _run([*pip, *_client_pins(), *env.requirements], log)
        if env.no_deps:
            _run([*pip, "--no-deps", *env.no_deps], log)
        stamp_file.write_text(stamp)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        tail = "\n".join(log[-_PIP_TAIL_LINES:])
        return EnvStatus(env, False, error=f"{exc}\n{tail}")
    return EnvStatus(env, True, str(python), _versions(python))
