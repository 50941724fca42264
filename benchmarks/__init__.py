"""The redsync suite's benchmark against the raw-socket floor and the Python Redlock peers.

Run it with ``python -m benchmarks`` (or ``make bench``); ``--help`` lists the options. It is not
a test: nothing here is collected by pytest, and nothing asserts a speed.

Layout:
  __main__.py   command line: which scenarios, node counts, rounds, pinning, output files
  harness.py    starts the servers, the worker processes, and runs the rounds interleaved
  runner.py     the worker process (also run from a peer's own virtualenv, so stdlib-only)
  contenders.py one small adapter per library: setup, one acquire attempt, release
  resp.py       a minimal RESP client on a raw socket (the "limit" lines and the referee)
  peers.py      where each peer is installed: beside us, or in its own ``.venvs/<peer>``
  hold.py       holding 1,000 / 10,000 auto-extended locks: CPU and round trips per second
  importcost.py what ``import redsync_core`` costs in a fresh process
  report.py     RESULTS.md and results.json

Only ``runner.py``, ``contenders.py`` and ``resp.py`` run inside peers' virtualenvs: they import
nothing outside the standard library at module level.
"""
