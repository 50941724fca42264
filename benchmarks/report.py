"""Turn one run's results (a plain dict, also written as JSON) into RESULTS.md.

Every ratio is taken against the ``limit`` line of the same run and the same N. For latency
(S1) the ratio is ``median / limit median`` (lower is better, 1.00 is the floor); for
throughput (S2) it is ``acq/s / limit acq/s`` (higher is better, 1.00 is the floor's rate).
"""

from __future__ import annotations

import os
import site
import sysconfig
from pathlib import Path
from typing import Any

__all__ = ["add_ratios", "markdown", "relative_paths", "s3_targets", "targets"]

REPO = Path(__file__).resolve().parent.parent

# The speed targets the report checks, as (scenario, contender, N, bound, "max" or "min").
TARGETS = (
    ("s1", "redsync_core", 5, 1.25, "max"),
    ("s1", "redsync_core-async", 5, 1.4, "max"),
    ("s1", "redsync_core", 1, 1.3, "max"),
    ("s2", "redsync_core", 5, 0.8, "min"),
)
OURS = ("redsync_core", "redsync_core-async")
#: The S3 targets of issue 13 (N=5, P=4, ours): (label, field, bound, "max" or "min").
S3_TARGETS = (
    ("busy fraction", "busy", 0.8, "min"),
    ("wait p99 ms", "wait_p99_ms", 25.0, "max"),
    ("longest wait ms", "wait_max_ms", 150.0, "max"),
    ("per-process counts max/min", "spread", 2.0, "max"),
)


def _limit(rows: list[dict[str, Any]], n: int, field: str) -> float | None:
    for row in rows:
        if row["contender"] == "limit" and row["nodes"] == n and not row.get("error"):
            value: float = row[field]
            return value or None
    return None


def add_ratios(results: dict[str, Any]) -> None:
    """Add ``x_limit`` to every S1 and S2 row (None when no limit line ran at that N)."""
    for row in results.get("s1", []):
        base = _limit(results["s1"], row["nodes"], "median_us")
        row["x_limit"] = row["median_us"] / base if base and not row["error"] else None
    for row in results.get("s2", []):
        base = _limit(results["s2"], row["nodes"], "acq_per_s")
        row["x_limit"] = row["acq_per_s"] / base if base and not row["error"] else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the value measured in this run (if it was measured)."""
    out = []
    for scenario, name, n, bound, kind in TARGETS:
        row = _row(results.get(scenario, []), name, n)
        value = None if row is None else row["x_limit"]
        met = None
        if value is not None:
            met = value <= bound if kind == "max" else value >= bound
            if scenario == "s2" and row is not None:
                met = met and row["referee_failures"] == 0 and row["overlaps"] == 0
        sign = "<=" if kind == "max" else ">="
        out.append(
            {"target": f"{scenario.upper()} {name} N={n}: x limit {sign} {bound}", "value": value}
            | {"met": met}
        )
    for scenario, better in (("s1", "lower"), ("s2", "higher")):
        for n in (3, 5):
            out.append(_ahead_of_peers(results.get(scenario, []), scenario, n, better))
    return out


def s3_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The S3 targets (N=5, P=4) for each of our APIs, with this run's values."""
    rows = [r for r in results.get("s3", []) if r["nodes"] == 5 and r["processes"] == 4]
    out = []
    for name in OURS:
        row = next((r for r in rows if r["contender"] == name and not r["error"]), None)
        for label, field, bound, kind in S3_TARGETS:
            value = None if row is None else row[field]
            met = None
            if value is not None:
                met = value <= bound if kind == "max" else value >= bound
            sign = "<=" if kind == "max" else ">="
            out.append({"target": f"S3 {name} N=5 P=4: {label} {sign} {bound:g}", "value": value,
                        "met": met})  # fmt: skip
        violations = None if row is None else row["referee_failures"] + row["overlaps"]
        out.append({"target": f"S3 {name} N=5 P=4: violations = 0", "value": violations,
                    "met": None if violations is None else violations == 0})  # fmt: skip
        peers = [r for r in rows if r.get("kind") == "peer" and not r["error"]]
        if row is not None and peers:
            behind = [
                f"{p['contender']} ({label})"
                for p in peers
                for label, field, _, kind in S3_TARGETS
                if p[field] is not None
                and row[field] is not None
                and (row[field] < p[field] if kind == "min" else row[field] > p[field])
            ]
            out.append({"target": f"S3 {name} N=5 P=4: ahead of every peer on each figure",
                        "value": "behind " + ", ".join(behind) if behind else "ahead of all",
                        "met": not behind})  # fmt: skip
    return out


def _ahead_of_peers(
    rows: list[dict[str, Any]], scenario: str, n: int, better: str
) -> dict[str, Any]:
    field = "median_us" if scenario == "s1" else "acq_per_s"
    ours = [r for r in rows if r["contender"] in OURS and r["nodes"] == n and not r["error"]]
    peers = [r for r in rows if r.get("kind") == "peer" and r["nodes"] == n and not r["error"]]
    label = f"{scenario.upper()} N={n}: every redsync_core API ahead of every peer ({field})"
    if not ours or not peers:
        return {"target": label, "value": None, "met": None}
    if better == "lower":
        worst_ours = max(r[field] for r in ours)
        best_peer = min(peers, key=lambda r: r[field])
        met = worst_ours < best_peer[field]
    else:
        worst_ours = min(r[field] for r in ours)
        best_peer = max(peers, key=lambda r: r[field])
        met = worst_ours > best_peer[field]
    value = (
        f"ours worst {worst_ours:,.0f}, best peer {best_peer['contender']} {best_peer[field]:,.0f}"
    )
    return {"target": label, "value": value, "met": met}


def _row(rows: list[dict[str, Any]], name: str, n: int) -> dict[str, Any] | None:
    for row in rows:
        if row["contender"] == name and row["nodes"] == n and not row["error"]:
            return row
    return None


# -- markdown ----------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _name(row: dict[str, Any]) -> str:
    name = row["contender"]
    return f"**{name}**" if row.get("kind") in ("limit", "ours") else name


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def _s1_table(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    for r in rows:
        if r["error"]:
            body.append(
                [_name(r), str(r["nodes"]), "failed: " + _first_line(r["error"])] + [""] * 5
            )
            continue
        body.append(
            [
                _name(r),
                str(r["nodes"]),
                _num(r["median_us"]),
                _num(r["p99_us"]),
                _num(r["pairs_per_s"]),
                _num(r["x_limit"], 2),
                _num(r["cpu_us_per_pair"]),
                f"{r['pairs']:,}" + (f" ({r['failures']} failed)" if r["failures"] else ""),
            ]
        )
    header = ["contender", "N", "median µs", "p99 µs", "pairs/s", "x limit", "CPU µs/pair", "pairs"]
    return _table(header, ["---", "--:", "--:", "--:", "--:", "--:", "--:", "--:"], body)


def _s2_table(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    for r in rows:
        if r["error"]:
            body.append(
                [_name(r), str(r["nodes"]), "failed: " + _first_line(r["error"])] + [""] * 7
            )
            continue
        spread = r["per_process"]
        body.append(
            [
                _name(r),
                str(r["nodes"]),
                _num(r["acq_per_s"]),
                _num(r["x_limit"], 2),
                f"{_num(r['wait_p50_us'])} / {_num(r['wait_p99_us'])}",
                f"{r['referee_failures']}/{r['overlaps']}",
                _num(r["cpu_us_per_try"]),
                _num(r["hold_p50_us"]),
                f"{min(spread):,}..{max(spread):,}" if spread else "–",
                str(r["lock_errors"]),
            ]
        )
    header = [
        "contender",
        "N",
        "acq/s",
        "÷ limit",
        "wait p50 / p99 µs",
        "viol (ref/ovl)",
        "client CPU µs/try",
        "hold p50 µs",
        "per process",
        "errors",
    ]
    return _table(
        header, ["---", "--:", "--:", "--:", "--:", ":-:", "--:", "--:", "--:", "--:"], body
    )


def _x_handoff(rows: list[dict[str, Any]], row: dict[str, Any]) -> float | None:
    """``row``'s busy fraction over the ``limit-handoff`` line's at its N and P (this ratio
    holds when the box's speed changes between runs; the fractions move with it)."""
    for line in rows:
        if (
            line["contender"] == "limit-handoff"
            and (line["nodes"], line["processes"]) == (row["nodes"], row["processes"])
            and not line["error"]
            and line["busy"]
        ):
            return float(row["busy"] / line["busy"])
    return None


def _s3_table(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    for r in rows:
        if r["error"]:
            body.append(
                [
                    _name(r),
                    str(r["nodes"]),
                    str(r["processes"]),
                    "failed: " + _first_line(r["error"]),
                ]
                + [""] * 9
            )
            continue
        spread = r["per_process"]
        body.append(
            [
                _name(r),
                str(r["nodes"]),
                str(r["processes"]),
                _num(r["acq_per_s"]),
                f"{_num(r['busy'], 2)} / {_num(r['ideal_busy'], 2)}",
                _num(_x_handoff(rows, r), 2),
                f"{_num(r.get('handoff_p50_us'))} / {_num(r.get('handoff_p90_us'))}",
                f"{_num(r['wait_p50_ms'], 1)} / {_num(r['wait_p99_ms'], 1)} / "
                f"{_num(r['wait_max_ms'], 0)}",
                f"{min(spread):,}..{max(spread):,}" if spread else "–",
                f"{r['referee_failures']}/{r['overlaps']}",
                _num(r["hold_p50_us"]),
                _num(r["cpu_us_per_acq"]),
                f"{r['gave_up']:,}",
            ]
        )
    header = [
        "contender",
        "N",
        "P",
        "acq/s",
        "busy / ideal",
        "busy ÷ limit-handoff",
        "hand-off p50 / p90 µs",
        "wait p50 / p99 / max ms",
        "per process",
        "viol (ref/ovl)",
        "hold p50 µs",
        "client CPU µs/acq",
        "gave up",
    ]
    return _table(
        header,
        ["---", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", ":-:", "--:", "--:", "--:"],
        body,
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:120] if text.strip() else "?"


def _path_prefixes() -> list[tuple[str, str]]:
    """Map this machine's directories to how a report names them, longest first."""
    named = [(REPO, "")]
    named += [(Path(d), "<site-packages>/") for d in site.getsitepackages()]
    named += [(Path(sysconfig.get_path(k)), "<site-packages>/") for k in ("purelib", "platlib")]
    named += [(Path(os.__file__).parent, "<stdlib>/")]
    prefixes: dict[str, str] = {}
    for directory, label in named:
        for form in (directory, directory.resolve()):  # as imported, and with symlinks resolved
            prefixes.setdefault(str(form) + os.sep, label)
    return sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)


def relative_paths(text: str) -> str:
    """Return ``text`` with file paths relative to the repository (``redsync_core/_sync.py``).

    Installed packages become ``<site-packages>/...`` and the standard library
    ``<stdlib>/...``, so a report names no directory of the machine it ran on (profiles and
    tracebacks print absolute paths).
    """
    for prefix, label in _path_prefixes():
        text = text.replace(prefix, label)
    return text


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        "# redsync suite benchmark results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['duration_s']:.0f} s).",
        "Regenerate with `make bench` (= `.venv/bin/python -m benchmarks`); see docs/benchmarks.md",
        "for the method. **Compare ratios, not microseconds**: absolute numbers come from a slow,",
        "shared box. `x limit` is always against the `limit` line of this same run and N.",
        "",
        "## Machine and method",
        "",
        *[f"* {k}: {v}" for k, v in meta["machine"].items()],
        f"* Placement: {meta['placement']}.",
        "  Affinity read back from the kernel: "
        + ", ".join(f"{k} {v}" for k, v in meta["affinities"].items())
        + ".",
        f"* Load average (1 min) before / after the run: {meta['load_before']:.2f} / "
        f"{meta['load_after']:.2f}. {meta['noise']}",
        f"* Each cell: {meta['seconds']:g} s in {meta['rounds']} interleaved rounds (every "
        "contender gets one slice per round, order rotated each round), samples pooled. "
        f"Lock TTL {meta['ttl_s']:g} s. Warm-up {meta['warmup_s']:g} s per slice (not counted).",
        "* S1: one client, acquire (one attempt: `tries=1` / `try_lock`) then release, back to "
        "back; a pair's time is the sample. `pairs/s` = pairs ÷ time spent in pairs.",
        f"* S2: {meta['s2_processes']} worker processes on one lock name, one attempt per try, "
        f"back-off U(0, {meta['backoff_s'] * 1000:g} ms) after a failed try. Inside each hold: "
        "`SET marker NX` then `DEL marker` on a separate referee redis-server (a failure of "
        "either is a violation, column `ref`) and the hold interval on the system-wide monotonic "
        "clock (an overlap of two holders' intervals is a violation, column `ovl`). With "
        "pinning, all 4 workers share the client CPU, so S2 also measures client CPU per try.",
    ]
    if results["contenders"]:
        out += ["", "## Contenders", ""]
    rows = [
        [c["name"], c["what"], c["where"], c["versions"], c["status"]]
        for c in results["contenders"]
    ]
    if rows:
        out += _table(["contender", "what", "runs in", "versions", "status"], ["---"] * 5, rows)
    if results.get("targets"):
        out += ["", "## Targets", ""]
        trows = []
        for t in results["targets"]:
            value = t["value"]
            shown = _num(value, 2) if isinstance(value, float) else (value or "not measured")
            verdict = {True: "met", False: "**not met**", None: "–"}[t["met"]]
            trows.append([t["target"], shown, verdict])
        out += _table(["target", "this run", "verdict"], ["---", "--:", ":-:"], trows)
    if results.get("s1"):
        out += ["", "## S1: uncontended acquire+release, one client", ""]
        out += ["`x limit` = median ÷ the `limit` median at the same N (lower is better).", ""]
        out += _s1_table(results["s1"])
    if results.get("s2"):
        out += ["", "## S2: contended, 4 processes, one lock name", ""]
        out += [
            "`÷ limit` = acq/s ÷ the `limit` line's acq/s at the same N (higher is better). "
            "`wait` is first try to success, back-off included; `hold` is the critical section "
            "(two referee round trips); `per process` is the fewest..most acquisitions of one "
            "worker; `errors` counts exceptions raised by acquire attempts.",
            "",
        ]
        out += _s2_table(results["s2"])
        st = results.get("selftest")
        if st:
            out += [
                "",
                f"Checker self-test: `selftest-nolock` (takes no lock at all) at N={st['nodes']} "
                f"for {st['seconds']:g} s was flagged with {st['referee_failures']:,} referee "
                f"failures and {st['overlaps']:,} overlaps: the checker "
                + ("works." if st["referee_failures"] and st["overlaps"] else "**did not fire**."),
            ]
    if results.get("s3"):
        meta3 = results["meta"].get("s3", {})
        out += ["", "## S3: hand-off under contention, default options", ""]
        out += [
            f"P processes each loop: `lock()` with the library's default waiting options, hold "
            f"{meta3.get('hold_ms', 1):g} ms (inside: the referee's `SET NX` / `DEL`, as in S2), "
            f"`unlock()`, {meta3.get('work_ms', 2):g} ms of work outside the lock; a `lock()` "
            "that gives up is called again and its wait goes on. `busy` = fraction of the "
            "time the lock is held; `ideal` = the busy fraction of a perfect hand-off: hold p50 "
            "÷ (hold p50 + the `limit` line's acquire+release round trips at that N, measured in "
            "this run). `hand-off` is the time from the end of one hold to the start of the "
            "next (the releasing `unlock()`, the next holder's wake-up and the rest of its "
            "`lock()`), pooled over the processes. `limit-handoff` runs our own hand-off protocol (our scripts, waiter "
            "queue and wake channels, default tries and delays) on raw sockets in one thread "
            "per process: the busy fraction this protocol reaches without the library's cost; "
            "`busy ÷ limit-handoff` is a contender's busy fraction over that line's in the same "
            "run and rounds (it moves less than the fractions when the box's speed changes). "
            "`wait` is from the first `lock()` call to success; `gave up` counts "
            "`lock()` calls that returned without the lock (defaults of redlock-py, redlock-ng "
            "and aioredlock give up after 3 tries).",
            "",
        ]
        run = meta3.get("run")
        if run:  # S3 measured in a run of its own, merged into these results
            out += [
                f"Measured by `{run['command']}` on {run['date']} ({run['measured']}; load "
                f"average {run['load_before']:.1f} before, {run['load_after']:.1f} after), "
                "not in the run of the sections above.",
                "",
            ]
        if meta3.get("note"):
            out += [meta3["note"], ""]
        out += _s3_table(results["s3"])
        if results.get("s3_targets"):
            out += ["", "### S3 targets (issue 13, N=5, P=4)", ""]
            trows = []
            for t in results["s3_targets"]:
                value = t["value"]
                shown = _num(value, 2) if isinstance(value, float) else str(value)
                verdict = {True: "met", False: "**not met**", None: "–"}[t["met"]]
                trows.append([t["target"], shown, verdict])
            out += _table(["target", "this run", "verdict"], ["---", "--:", ":-:"], trows)
    if results.get("hold"):
        out += _hold_section(results["hold"])
    if results.get("import"):
        out += _import_section(results["import"])
    if results.get("profile"):
        out += ["", "## Profile of our S1 path (cProfile, top functions by own time)", ""]
        out += [
            "cProfile slows Python code several times over, so read shares, not durations.",
            "",
        ]
        for name, prof in results["profile"].items():
            out += [f"### {name}", "", "```", prof.strip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _hold_section(rows: list[dict[str, Any]]) -> list[str]:
    out = ["", "## Holding many auto-extended locks (expiry 30 s, 3 nodes)", ""]
    out += [
        "Each lock is extended every ~expiry/3 (10 s minus jitter). `CPU ms/s` is process CPU time "
        "in the window ÷ window (all of it extension work: the main thread sleeps). `round trips/s "
        "per node` is the EVALSHA+EVAL calls each server counted (INFO commandstats) ÷ window.",
        "",
    ]
    body = []
    for r in rows:
        if r.get("error"):
            body.append(
                [str(r["count"]), r["mode"], "failed: " + _first_line(r["error"])] + [""] * 5
            )
            continue
        per_node = " / ".join(_num(x, 2) for x in r["round_trips_per_s_per_node"])
        body.append(
            [
                f"{r['count']:,}",
                r["mode"],
                f"{r['acquire_s']:.1f}",
                _num(r["extensions_per_s"]),
                _num(r["cpu_ms_per_s"], 2),
                per_node,
                str(r["lost"]),
                str(r["threads"]),
            ]
        )
    header = [
        "locks",
        "API",
        "acquire all (s)",
        "extensions/s (expected)",
        "CPU ms/s",
        "round trips/s per node",
        "lost",
        "threads",
    ]
    return out + _table(header, ["--:", "---", "--:", "--:", "--:", "--:", "--:", "--:"], body)


def _import_section(imp: dict[str, Any]) -> list[str]:
    if imp.get("error"):
        return ["", "## Import cost", "", "failed: " + _first_line(imp["error"])]
    threads, sockets = imp["threads_before_after"], imp["sockets_before_after"]
    verdict = "under" if imp["after_redis_ms"] < 30 else "**over**"
    return [
        "",
        "## Import cost of `redsync_core` (fresh processes, `-X importtime`)",
        "",
        f"* After `import redis`: **{imp['after_redis_ms']:.1f} ms** ({verdict} the 30 ms target); "
        f"alone (redis-py included): {imp['alone_ms']:.1f} ms; redis-py alone: "
        f"{imp['redis_alone_ms']:.1f} ms. Medians of {imp['repeats']} processes.",
        f"* Threads before/after the import: {threads[0]} / {threads[1]}; open sockets: "
        f"{sockets[0]} / {sockets[1]}.",
    ]
