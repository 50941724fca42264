"""Model check of fencing tokens: the library's own flows, run against model nodes, in every
interleaving of a small system (see ``fencing_model.py`` for the model).

Within the lock's assumptions no state has a token inversion (nor a second holder); drop one
assumption (restarts keep the data; a node's clock drifts by at most the allowance) and the
search finds a token inversion and prints its trace, as docs/safety.md shows.
"""

from __future__ import annotations

from fencing_model import Config, Result, random_walks, search

LOCK_UNLOCK = (("lock", 1), ("unlock",))
LOCK = (("lock", 1),)
LOCK_TWICE = (("lock", 2), ("unlock",))  # one lock() call with two attempts (same value)


def report(name: str, result: Result) -> None:
    how = "every reachable state" if result.complete else f"up to depth {result.depth} or sampled"
    print(f"\n== {name}: {result.states} states ({how})")
    print(result.violation.render() if result.violation else "no violation")


def test_no_inversion_with_crashes_expiry_and_drift_within_bounds() -> None:
    # 3 nodes, 2 clients that lock and unlock at any moment; replies heard or lost (a client
    # stops waiting at its deadline); a node crashes and restarts with its data; keys expire
    # up to the drift allowance early; time passes. Every reachable state.
    result = search(Config(max_delayed=0, crashes=1))
    report("within the assumptions: crash + restart with data", result)
    assert result.complete
    assert result.states > 100_000  # the search did explore (the model did not go inert)
    assert result.violation is None


def test_no_inversion_with_delayed_requests() -> None:
    # A request may be delayed: it runs on its node at any later moment, its reply too late to
    # count, and the connection fails the next command until then. Too many states to visit
    # all: every behaviour of up to 9 transitions (the counterexamples below need 9 to 11).
    result = search(Config(programs=(LOCK_UNLOCK, LOCK), crashes=0, max_delayed=1), max_depth=9)
    report("within the assumptions: delayed requests, 9 transitions", result)
    assert result.depth == 9
    assert result.violation is None


def test_no_inversion_with_retries_in_one_lock_call() -> None:
    # Two attempts in one lock() call share a value: a release of the first attempt must not
    # let the second one's token go back.
    result = search(Config(programs=(LOCK_TWICE, LOCK_UNLOCK), crashes=0, max_delayed=0))
    report("within the assumptions: retries", result)
    assert result.complete
    assert result.violation is None


def test_no_inversion_in_random_walks_with_everything_at_once() -> None:
    # Delays, a crash and restart, drift within bounds, two clients: too many states to visit
    # all, so a seeded sample of long walks.
    result = random_walks(Config(crashes=1, max_delayed=1), walks=1000, seed=16)
    report("within the assumptions: sampled walks", result)
    assert result.states > 5_000
    assert result.violation is None


def test_restarts_without_persistence_invert_tokens() -> None:
    result = search(
        Config(
            programs=(LOCK_UNLOCK, LOCK),
            max_delayed=0,
            crashes=2,
            persistence=False,
            check_mutual_exclusion=False,
        )
    )
    report("assumption dropped: restart without persistence", result)
    assert result.violation is not None
    assert result.violation.kind == "token inversion"
    assert any("EMPTY" in step for step in result.violation.trace)


def test_unbounded_drift_inverts_tokens() -> None:
    result = search(
        Config(
            programs=(LOCK, LOCK_UNLOCK),
            max_delayed=0,
            crashes=0,
            bounded_drift=False,
            check_mutual_exclusion=False,
        )
    )
    report("assumption dropped: unbounded drift", result)
    assert result.violation is not None
    assert result.violation.kind == "token inversion"
    assert any("expires" in step for step in result.violation.trace)


def test_the_lock_itself_breaks_first_without_its_assumptions() -> None:
    # With the mutual exclusion check on, the same model finds the known Redlock hole.
    result = search(Config(programs=(LOCK, LOCK), max_delayed=0, crashes=0, bounded_drift=False))
    assert result.violation is not None
    assert result.violation.kind == "mutual exclusion"
