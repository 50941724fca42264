"""Old releases the extras still allow: what they do differently, held as regressions.

The whole suite runs on those releases in the ``floors`` nox session (``make matrix``); these
tests pin the differences it found, so that they fail on any release, not only on the old one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from redsync_core import ConfigurationError, Redsync
from redsync_core._transport.commands import _pack_python, pack


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/0?protocol=:", "redis://h/0?protocol=x"])
def test_a_protocol_that_is_not_a_number_is_a_configuration_error(url: str) -> None:
    # redis-py 5.0 raises UnboundLocalError (not ValueError) for it.
    with pytest.raises(ConfigurationError, match="protocol"):
        Redsync([url])


def test_packing_falls_back_to_python_without_hiredis_pack_command() -> None:
    # hiredis 2.0 (allowed by the extra) has no pack_command.
    code = (
        "import sys, types\n"
        "sys.modules['hiredis'] = old = types.ModuleType('hiredis')\n"
        "old.__version__ = '2.0.0'\n"
        "from redsync_core._transport import commands\n"
        "assert commands.pack is commands._pack_python, commands.pack\n"
        "from redsync_core import Redsync\n"
        "with Redsync(['memory://a']) as rs:\n"
        "    rs.new_mutex('k').lock()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [("SET", "k", "v", "NX", "PX", 1000), ("EVALSHA", "a" * 40, 1, "ključ", "välue"), ("GET", "")],
)
def test_every_packer_encodes_like_the_python_one(args: tuple[str | int, ...]) -> None:
    assert pack(*args) == _pack_python(*args)
