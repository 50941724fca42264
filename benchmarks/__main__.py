"""``python -m benchmarks``: run the benchmark and write RESULTS.md and results.json.

    python -m benchmarks                  everything: S1, S2, hold, import, profile; all peers
    python -m benchmarks --quick          < 2 min: ours and the limit lines only (S1, S2, profile)
    python -m benchmarks --only s1 --nodes 5
    python -m benchmarks --only hold      the auto-extension cost alone
    python -m benchmarks --render benchmarks/results.json   re-render RESULTS.md, measure nothing

A full run writes benchmarks/RESULTS.md and benchmarks/results.json; any partial run (quick,
--only, --nodes, --contenders, --seconds...) writes benchmarks/results/partial.{md,json} instead,
so it never overwrites the published numbers. ``--md`` / ``--json`` choose other paths.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .contenders import CONTENDERS
from .harness import (
    S2_PROCESSES,
    S3_HOLD_S,
    S3_PROCESSES,
    S3_WORK_S,
    Harness,
    S2Cell,
    placement,
)
from .peers import ENVS, REPO
from .report import add_ratios, markdown, relative_paths, s3_targets, targets

HERE = Path(__file__).resolve().parent
SCENARIOS = ("s1", "s2", "s3", "hold", "import", "profile")
QUICK_CONTENDERS = ("limit", "limit-sequential", "redsync_core", "redsync_core-async")
DEFAULT_CONTENDERS = tuple(name for name, s in CONTENDERS.items() if s.kind != "selftest")
NOISE = (
    "The box has 2 CPUs shared with other jobs, so expect ±20-50 % between "
    "runs in absolute numbers; the interleaved rounds make ratios within one run far steadier."
)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="ours + limit lines only, short cells")
    p.add_argument("--only", type=_csv, help=f"scenarios to run, of {','.join(SCENARIOS)}")
    p.add_argument("--nodes", type=_csv, help="node counts (default 1,3,5)")
    p.add_argument("--contenders", type=_csv, help="contender names (default: all)")
    p.add_argument("--seconds", type=float, help="seconds per cell (default 3, quick 1.2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per cell (default 3)")
    p.add_argument("--processes", type=_csv, help="S3 process counts (default 4,8)")
    p.add_argument("--pin", choices=("cross", "none"), default="cross", help="CPU placement")
    p.add_argument("--hold-counts", type=_csv, default=["1000", "10000"], help="locks held")
    p.add_argument("--hold-window", type=float, default=30.0, help="seconds measured per hold")
    p.add_argument("--md", type=Path, help="Markdown output path")
    p.add_argument("--json", type=Path, help="JSON output path")
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the Markdown report of an earlier run's JSON "
        "(to --md; default: RESULTS.md for results.json, else the JSON path with .md)",
    )
    args = p.parse_args(argv)
    unknown = set(args.only or ()) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    bad = set(args.contenders or ()) - set(CONTENDERS)
    if bad:
        p.error(f"unknown contender(s) {sorted(bad)}; choose from {', '.join(CONTENDERS)}")
    return args


def _machine() -> dict[str, str]:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kb = int(f.readline().split()[1])
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = {}
    for dist in ("redis", "hiredis"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "redsync_core measured": _tree_state(),
        "CPU": f"{os.cpu_count()} × {model}",
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "redis-server": server.split(" sha=")[0],
        "client libraries": f"redis-py {versions['redis']}, hiredis {versions['hiredis']} "
        "(the same versions in every peer's virtualenv)",
    }


def _tree_state() -> str:
    """The commit of this checkout, and whether redsync_core has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=REPO, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "redsync_core")
    changed = len(dirty.splitlines())
    return f"commit {commit}" + (f" + uncommitted changes in {changed} files" if changed else "")


def _contender_rows(h: Harness, names: list[str], ran: set[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        spec = CONTENDERS[name]
        if spec.env is None:
            where = "benchmark interpreter"
            versions = "redsync_core (this tree)" if spec.kind == "ours" else "stdlib sockets"
            if name == "redis-py-lock":
                versions = f"redis {importlib.metadata.version('redis')}"
            status = "ran" if name in ran else "not run"
        else:
            where = f".venvs/{spec.env}"
            env = h.env_status.get(spec.env)
            keep = {"redis", "hiredis", "aioredis", "pydantic", *ENVS[spec.env].packages()}
            versions = ", ".join(
                f"{k} {v}" for k, v in sorted((env.versions if env else {}).items()) if k in keep
            )
            if env is None:
                status = "not run"
            elif not env.ok:
                status = "NOT INSTALLED: " + " ".join(env.error.split())[-300:]
            else:
                status = "ran" if name in ran else "not run"
            note = ENVS[spec.env].note
            if note:
                status += f" ({note})"
        if spec.single_node:
            status += "; single node, N=1 only"
        rows.append(
            {
                "name": name,
                "what": spec.what,
                "where": where,
                "versions": versions,
                "status": status,
            }
        )
    return rows


def _render(source: Path, md: Path | None) -> int:
    """Write the Markdown report of the results in ``source`` (after a change to report.py)."""
    results = json.loads(source.read_text(encoding="utf-8"))
    published = source.resolve() == (HERE / "results.json").resolve()
    target = md or (HERE / "RESULTS.md" if published else source.with_suffix(".md"))
    target.write_text(relative_paths(markdown(results)), encoding="utf-8")
    print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return _render(args.render, args.md)
    started = time.monotonic()
    partial = (
        any(
            (
                args.quick,
                args.only,
                args.nodes,
                args.contenders,
                args.seconds,
                args.rounds,
                args.processes,
            )
        )
        or args.pin != "cross"
    )
    scenarios = args.only or (["s1", "s2", "profile"] if args.quick else list(SCENARIOS))
    nodes = sorted({int(n) for n in args.nodes or ["1", "3", "5"]})
    if any(n < 1 or n > 5 for n in nodes):
        print("--nodes: each count must be between 1 and 5", file=sys.stderr)
        return 2
    names = args.contenders or list(QUICK_CONTENDERS if args.quick else DEFAULT_CONTENDERS)
    if "limit" not in names and {"s1", "s2", "s3"} & set(scenarios):
        names.insert(0, "limit")  # every ratio needs the floor of the same run
    if "limit-handoff" not in names and "s3" in scenarios:
        names.insert(1, "limit-handoff")  # what the S3 hand-off costs without the library
    processes = [int(p) for p in args.processes or [str(p) for p in S3_PROCESSES]]
    seconds = args.seconds or (1.2 if args.quick else 3.0)
    rounds = args.rounds or 3
    md = args.md or (HERE / "results" / "partial.md" if partial else HERE / "RESULTS.md")
    js = args.json or (HERE / "results" / "partial.json" if partial else HERE / "results.json")

    place = placement(args.pin)
    h = Harness(place)
    command = "python -m benchmarks" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "placement": place.describe(),
            "load_before": os.getloadavg()[0],
            "noise": NOISE,
            "seconds": seconds,
            "rounds": rounds,
            "ttl_s": h.ttl_s,
            "warmup_s": h.warmup_s,
            "backoff_s": h.backoff_s,
            "s2_processes": S2_PROCESSES,
            "s3": {
                "hold_ms": S3_HOLD_S * 1000,
                "work_ms": S3_WORK_S * 1000,
                "processes": processes,
            },
            "scenarios": scenarios,
            "nodes": nodes,
        }
    }
    print(f"{command}: {', '.join(scenarios)} at N={nodes}; {place.describe()}", flush=True)
    ran: set[str] = set()
    with h.running():
        results["meta"]["affinities"] = h.affinities()
        specs = h.available(names) if {"s1", "s2", "s3", "profile"} & set(scenarios) else []
        kinds = {s.name: s.kind for s in specs}
        s12_specs = [s for s in specs if not s.s3_only]
        if "s1" in scenarios:
            print(f"S1: {len(s12_specs)} contenders, {seconds:g} s per cell", flush=True)
            results["s1"] = [c.summary() for c in h.run_s1(s12_specs, nodes, seconds, rounds)]
        if "s2" in scenarios:
            print(f"S2: {len(s12_specs)} contenders, {seconds:g} s per cell", flush=True)
            results["s2"] = [c.summary() for c in h.run_s2(s12_specs, nodes, seconds, rounds)]
            results["selftest"] = _selftest(h, nodes[0])
        if "s3" in scenarios:
            s3_specs = [
                s for s in specs if (s.s3_only or s.kind in ("ours", "peer")) and not s.single_node
            ]
            s3_nodes = [n for n in nodes if n > 1] or [3]
            print(
                f"S3: {len(s3_specs)} contenders, P={processes}, {seconds:g} s per cell",
                flush=True,
            )
            cells = h.run_s3(s3_specs, s3_nodes, processes, seconds, rounds)
            results["s3"] = [c.summary() for c in cells]
        for row in results.get("s1", []) + results.get("s2", []) + results.get("s3", []):
            row["kind"] = kinds.get(row["contender"], "")
            if not row["error"]:
                ran.add(row["contender"])
        if "profile" in scenarios:
            n = max(nodes)
            results["profile"] = {}
            for spec in specs:
                if spec.kind == "ours":
                    print(f"profile: {spec.name} at N={n}", flush=True)
                    prof = h.profile(spec, n, 1.0 if args.quick else 3.0)
                    title = f"{spec.name}, N={n}: {prof['pairs']:,} pairs in {prof['wall_s']:.1f} s"
                    results["profile"][title] = prof["text"]
        for spec in specs:
            h.retire(spec)
        if "hold" in scenarios:
            results["hold"] = _hold(h, [int(c) for c in args.hold_counts], args.hold_window)
    if "import" in scenarios:
        print("import cost ...", flush=True)
        results["import"] = _import()
    add_ratios(results)
    results["targets"] = targets(results) if {"s1", "s2"} & set(scenarios) else []
    results["s3_targets"] = s3_targets(results) if "s3" in scenarios else []
    measured = {"s1", "s2", "s3", "profile"} & set(scenarios)
    results["contenders"] = _contender_rows(h, names, ran) if measured else []
    results["meta"]["load_after"] = os.getloadavg()[0]
    results["meta"]["duration_s"] = time.monotonic() - started
    md.parent.mkdir(parents=True, exist_ok=True)
    js.parent.mkdir(parents=True, exist_ok=True)
    text = relative_paths(markdown(results))
    md.write_text(text, encoding="utf-8")
    js.write_text(relative_paths(json.dumps(results, indent=1)) + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {md.relative_to(REPO) if md.is_relative_to(REPO) else md} and {js.name}")
    return 0


def _selftest(h: Harness, n: int) -> dict[str, Any]:
    """Run a contender that takes no lock through S2: the checker must flag it."""
    spec = CONTENDERS["selftest-nolock"]
    cell = S2Cell(spec.name, n)
    h._s2_slice(spec, n, 0, 0.5, cell)
    h.retire(spec)
    summary = cell.summary()
    summary["seconds"] = 0.5
    return summary


def _hold(h: Harness, counts: list[int], window_s: float) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        for mode in ("sync", "async"):
            print(f"hold: {count:,} locks ({mode}), {window_s:g} s window", flush=True)
            params = {
                "urls": h.urls(3),
                "count": count,
                "mode": mode,
                "expiry_s": 30.0,
                "window_s": window_s,
            }
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.hold", json.dumps(params)],
                capture_output=True,
                text=True,
                cwd=str(REPO),
                timeout=window_s + 600,
                check=False,
            )
            if proc.returncode != 0:
                rows.append(params | {"error": proc.stderr.strip()[-2000:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def _import() -> dict[str, Any]:
    from .importcost import measure

    try:
        return measure()
    except (subprocess.SubprocessError, RuntimeError) as exc:
        return {"error": str(exc)}


if __name__ == "__main__":
    sys.exit(main())
