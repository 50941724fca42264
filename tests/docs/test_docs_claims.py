"""What the docs' tables list (options, defaults, settings, flags, checks, events, metrics)
against what the code defines: a renamed option or a new flag must show in the docs."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from pathlib import Path

import pytest

import redsync_core
from redsync_core import MutexOptions, adapters, hooks
from redsync_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"`([^`]+)`")


def doc(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def table(path: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after the line ``heading`` in ``path``."""
    lines = doc(path).splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def first_name(cell: str) -> str:
    match = NAME.search(cell)
    assert match, f"no `name` in {cell!r}"
    return match.group(1)


def test_readme_options_table_is_mutex_options_with_their_defaults() -> None:
    rows = table("README.md", "## Options")
    documented = {first_name(row[0]): ast.literal_eval(first_name(row[1])) for row in rows}
    fields = {f.name: f.default for f in dataclasses.fields(MutexOptions)}
    assert documented == fields


def test_api_imports_every_public_name() -> None:
    block = doc("docs/api.md").split("```python\nfrom redsync_core import (", 1)[1]
    imported = set(re.findall(r"\w+", block.split(")", 1)[0]))
    assert imported == set(redsync_core.__all__)


def test_api_adapters_table_is_the_module() -> None:
    rows = table("docs/api.md", "### `redsync_core.adapters`")
    documented = {first_name(row[0]).split("(")[0] for row in rows}
    public = set(adapters.__all__) - {"OnBusy", "ON_BUSY_CHOICES"}  # a type; named in a row
    assert documented == public


def test_api_hooks_table_lists_each_event_with_its_fields() -> None:
    rows = table("docs/api.md", "## Hooks: lock events for listeners")
    methods = {name for name in vars(hooks.Listener) if not name.startswith("_")}
    assert {first_name(row[0]).split("(")[0] for row in rows} == methods
    for row in rows:
        event_class = getattr(hooks, re.search(r"event: (\w+)", row[0]).group(1))  # type: ignore[union-attr]
        fields = {f.name for f in dataclasses.fields(event_class)} - {"mutex"}
        properties = {n for n, v in vars(event_class).items() if isinstance(v, property)}
        documented = {name for name in NAME.findall(row[1]) if re.fullmatch(r"[a-z_]+", name)} & (
            fields | properties | {"name", "key", "mutex"}
        )
        assert fields <= documented, f"{row[0]}: {fields - documented} not documented"
        has_mutex = issubclass(event_class, hooks.MutexEvent)
        assert has_mutex == ("no `mutex`" not in row[1]), f"{row[0]}: says it has a mutex"


def parser_flags() -> set[str]:
    parser = build_parser()
    flags: set[str] = set()
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions.extend(sub._actions)
    for action in actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
    return flags - {"--help", "--version"}


def test_cli_doc_names_every_flag_and_only_real_ones() -> None:
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", doc("docs/cli.md")))
    assert mentioned == parser_flags()


def test_django_checks_and_settings_are_the_app_s() -> None:
    checks = "".join(
        (ROOT / "redsync_django" / name).read_text(encoding="utf-8")
        for name in ("checks.py", "conf.py")
    )
    rows = table("docs/django.md", "## System checks")
    assert {first_name(row[0]) for row in rows} == set(re.findall(r"redsync\.[EW]\d{3}", checks))
    conf = (ROOT / "redsync_django" / "conf.py").read_text(encoding="utf-8")
    keys = ast.literal_eval(re.search(r"^KEYS = (\(.*?\))$", conf, re.M).group(1))  # type: ignore[union-attr]
    rows = table("docs/django.md", "# Django: `redsync_django`")  # the REDSYNC keys
    assert {first_name(row[0]) for row in rows} == set(keys)


def test_flask_config_keys_are_the_extension_s() -> None:
    conf = (ROOT / "redsync_flask" / "conf.py").read_text(encoding="utf-8")
    rows = table("docs/flask.md", "## Configuration")
    assert {first_name(row[0]) for row in rows} == set(re.findall(r'"(REDSYNC_[A-Z_]+)"', conf))


def test_celery_task_options_and_defaults_are_singleton_task_s() -> None:
    source = (ROOT / "redsync_celery" / "task.py").read_text(encoding="utf-8")
    defaults = {
        name: ast.literal_eval(value)
        for name, value in re.findall(r"^    (lock_\w+): [^=\n]+= (.+)$", source, re.M)
    }
    rows = table("docs/celery.md", "## Task options")
    assert {first_name(row[0]) for row in rows} == set(defaults)
    for row in rows:
        name = first_name(row[0])
        if name != "lock_expiry":  # "redsync_options["expiry"], 30": a default taken elsewhere
            assert ast.literal_eval(first_name(row[1])) == defaults[name], name


@pytest.mark.parametrize(
    "heading", ["## Settings (`app.conf`)", "## Beat on several hosts (`redsync_celery.beat`)"]
)
def test_celery_settings_are_read_by_the_conf_module(heading: str) -> None:
    source = (ROOT / "redsync_celery" / "conf.py").read_text(encoding="utf-8")
    read = set(re.findall(r'app\.conf\.get\("(redsync_\w+)"\)', source))
    for row in table("docs/celery.md", heading):
        assert first_name(row[0]) in read


def test_observability_names_are_what_otel_emits() -> None:
    source = (ROOT / "redsync_core" / "otel.py").read_text(encoding="utf-8")
    emitted = set(re.findall(r'"(redsync\.[a-z._]+)"', source))
    rows = table("docs/observability.md", "## What is emitted")
    names = {first_name(row[0]) for row in rows}
    attributes = {n for row in rows for n in NAME.findall(row[3]) if n.startswith("redsync.")}
    assert names | attributes == emitted


def without_code_blocks(text: str) -> str:
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.MULTILINE | re.DOTALL)


DOC_PATHS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOC_PATHS)
def test_every_test_the_docs_cite_exists(path: str) -> None:
    """`tests/x.py::test_y` (and `::test_z` after it, same file) name real test functions."""
    cited = 0
    current: Path | None = None
    for file_part, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", doc(path)):
        if file_part.endswith("__init__.py"):  # the README warns against adding one
            continue
        if file_part:
            current = ROOT / file_part
            assert current.exists(), f"{path} cites {file_part}: no such file"
        if name:
            assert current is not None, f"{path} cites ::{name} before any file"
            source = current.read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), (
                f"{path} cites {current.relative_to(ROOT)}::{name}: no such test"
            )
            cited += 1
    if path == "docs/safety.md":
        assert cited >= 30


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("path", DOC_PATHS)
def test_links_between_the_docs_lead_somewhere(path: str) -> None:
    source = ROOT / path
    text = without_code_blocks(source.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (source.parent / file_part).resolve() if file_part else source
        assert linked.exists(), f"{path}: link to {target}: no such file"
        if anchor:
            linked_text = without_code_blocks(linked.read_text(encoding="utf-8"))
            headings = re.findall(r"^#+ (.+)$", linked_text, re.MULTILINE)
            slugs = {github_slug(h) for h in headings}
            assert anchor in slugs, f"{path}: link to {target}: no such heading"


def test_readme_names_every_extra_and_what_all_holds() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = dict(re.findall(r"^(\w+) = \[(.*)\]", section, re.MULTILINE))
    in_all = set(re.findall(r"\[([\w,]+)\]", extras["all"])[0].split(","))
    sentence = doc("README.md").split("Install: ", 1)[1].split(". ", 1)[0]
    all_part, also_part = sentence.split("`all`:", 1)[1].split("also", 1)
    assert set(NAME.findall(all_part)) == in_all
    assert set(NAME.findall(also_part)) == set(extras) - in_all - {"all", "test", "dev"}


def test_benchmarks_doc_names_every_contender() -> None:
    from benchmarks.contenders import CONTENDERS

    named = set(re.findall(r"`([\w-]+)`", doc("docs/benchmarks.md")))
    assert set(CONTENDERS) - named == set()
