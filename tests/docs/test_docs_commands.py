"""The command lines of README.md and docs/*.md parse: every concrete `redsync ...` and
`python -m benchmarks ...` line (in code blocks and inline code) is given to the command's own
argument parser, which names an unknown flag, scenario or contender. Nothing is run."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from redsync_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(
    r"(?:^|(?<=\s))(?<!manage\.py )(?<!myapp )"
    r"(redsync|(?:\.venv/bin/)?python -m benchmarks|make bench)(?=\s|$)([^`#\n]*)",
    re.MULTILINE,
)
FENCE = re.compile(r"^([ \t]*)```(\w*)[ \t]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_:*']*$|[\[\]()|]|\.\.\.")  # NAME, [options], (A | B)


def code_texts(text: str) -> list[tuple[str, bool]]:
    """Fenced blocks (shell, cron, untyped): whole command lines; inline code (joined across a
    line break): also mentions of a command without its arguments (``redsync status``)."""
    blocks = [
        (match.group(3), True)
        for match in FENCE.finditer(text)
        if match.group(2) in ("sh", "bash", "cron", "")
    ]
    inline = [
        (code.replace("\n", " "), False) for code in re.findall(r"`([^`]+)`", FENCE.sub("", text))
    ]
    return blocks + inline


def commands() -> list[tuple[str, str, list[str], bool]]:
    found = []
    for doc in DOCS:
        for code, whole in code_texts(doc.read_text(encoding="utf-8")):
            for program, rest in COMMAND.findall(code):
                try:
                    words = shlex.split(rest)
                except ValueError:  # an unbalanced quote: prose, not a command
                    continue
                if "--" in words:
                    words = words[: words.index("--")]
                if any(PLACEHOLDER.search(word) for word in words):
                    continue  # a synopsis, not a command line
                found.append((doc.name, program.split()[-1], words, whole))
    return found


COMMANDS = commands()
REDSYNC = [c for c in COMMANDS if c[1] == "redsync" and c[2]]
BENCHMARKS = [c for c in COMMANDS if c[1] != "redsync"]
# what an inline mention may leave out: the arguments, never a flag's or command's name
MENTION = re.compile(r"the following arguments are required|expected one argument")


def test_the_docs_have_commands_to_check() -> None:
    assert sum(1 for c in REDSYNC if c[3]) >= 5
    assert len(BENCHMARKS) >= 6


@pytest.mark.parametrize(
    ("doc", "words", "whole"),
    [(doc, words, whole) for doc, _, words, whole in REDSYNC],
    ids=[" ".join(c[2]) for c in REDSYNC],
)
def test_redsync_command_lines_parse(
    doc: str, words: list[str], whole: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        build_parser().parse_args(words)
    except SystemExit:
        error = capsys.readouterr().err
        assert not whole, f"{doc}: redsync {' '.join(words)}: {error}"
        assert MENTION.search(error), f"{doc}: redsync {' '.join(words)}: {error}"


@pytest.mark.parametrize(
    ("program", "words"),
    [(program, words) for _, program, words, _ in BENCHMARKS],
    ids=[" ".join(c[2]) or c[1] for c in BENCHMARKS],
)
def test_benchmark_command_lines_parse(program: str, words: list[str]) -> None:
    if program == "bench":  # make bench BENCH_ARGS="--quick"
        words = shlex.split(" ".join(w.split("=", 1)[1] for w in words if "=" in w))
    benchmarks_main = importlib.import_module("benchmarks.__main__")
    benchmarks_main.parse_args(words)  # exits (a failure here) on an unknown flag or name
