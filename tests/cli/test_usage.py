"""Bad input: exit status 2, one line of error on stderr, no traceback, nothing run."""

from __future__ import annotations

import pytest
from cli_helpers import clean_env, one_line, redsync

NODE = ["--url", "redis://127.0.0.1:1/0"]  # never contacted: usage errors come first

BAD_INPUT = {
    "run-no-command-after-dashes": ["run", "job", *NODE, "--"],
    "run-without-dashes": ["run", "job", *NODE],
    "run-command-without-dashes": ["run", "job", *NODE, "true"],
    "no-nodes": ["run", "job", "--", "true"],
    "negative-expiry": ["run", "job", "--expiry", "-1", *NODE, "--", "true"],
    "zero-expiry": ["run", "job", "--expiry", "0", *NODE, "--", "true"],
    "expiry-not-a-number": ["run", "job", "--expiry", "soon", *NODE, "--", "true"],
    "negative-wait": ["run", "job", "--wait", "-2", *NODE, "--", "true"],
    "busy-exit-code-out-of-range": ["run", "job", "--busy-exit-code", "300", *NODE, "--", "true"],
    "unknown-option": ["run", "job", "--bogus", *NODE, "--", "true"],
    "unknown-top-option": ["--bogus", "ping"],
    "unknown-command": ["frobnicate"],
    "no-command": [],
    "bad-url-scheme": ["ping", "--url", "ftp://127.0.0.1/0"],
    "status-without-name": ["status", *NODE],
    "status-extra-arguments": ["status", "job", *NODE, "--", "more"],
    "release-without-force": ["release", "job", *NODE],
    "release-without-name-or-pattern": ["release", "--force", *NODE],
    "release-name-and-pattern": ["release", "job", "--pattern", "j*", "--force", *NODE],
    "release-pattern-without-force": ["release", "--pattern", "*", *NODE],
    "ls-page-size-0": ["ls", "--page-size", "0", *NODE],
    "ls-timeout-0": ["ls", "--timeout", "0", *NODE],
    "demo-two-nodes": ["demo", "--nodes", "2"],
    "demo-one-worker": ["demo", "--workers", "1"],
    "demo-too-short": ["demo", "--seconds", "1"],
    "demo-zero-workers": ["demo", "--workers", "0"],
}


@pytest.mark.parametrize("args", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_exits_2_with_one_line(args):
    result = redsync(*args, env=clean_env(REDSYNC_URLS=""))
    assert result.returncode == 2, result
    line = one_line(result.stderr)
    assert line.startswith("redsync")
    assert "error" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_documents_the_exit_statuses():
    for args in (["--help"], ["run", "--help"]):
        result = redsync(*args)
        assert result.returncode == 0
        for status in ("75", "69", "128+N", "127"):
            assert status in result.stdout


def test_the_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("redsync")
    assert script.exists() or shutil.which("redsync")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("redsync ")
