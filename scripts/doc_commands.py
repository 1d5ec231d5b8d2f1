"""Every shell command of README.md and docs/**/*.md, as written: list them or run them.

    python scripts/doc_commands.py --list [PATTERN ...]   # number, file:line, command, skip reason
    python scripts/doc_commands.py [PATTERN ...]          # run them (from the repository root)
    python scripts/doc_commands.py --timeout 600 '#3$' 'README.md:9 '

A command is a top-level command of a fenced ``bash``, ``sh``, ``shell`` or ``console`` block
(``console``: the ``$ `` lines): continued lines (``\\``) and a ``for`` / ``while`` / ``if`` with
its body are one command; a block's variable assignments (``T=...``) are kept and run before each
of its commands. ``PATTERN`` (a regex) picks the commands whose ``#<n> <file>:<line> <command>``
it matches; several patterns: any of them.

Commands run in ``bash`` in the repository root, one at a time, as written: they write where the
docs say (``outputs/``, ``runs/``, ``docs/results/...``), so run a nightly job in a scratch
checkout. Commands that cannot run as written are skipped, and each skip says why (:data:`SKIPS`
and placeholders such as ``<dir>`` that the reader fills in). Some run for hours (the studies'
trainings): pick with patterns, bound with ``--timeout``. The exit status is 1 when a command
fails or times out.

``tests/test_doc_commands.py`` checks every command without running it, in seconds: bash parses
each block, ``train.py``'s overrides compose (Hydra's compose API) and validate, the tools' and
scripts' arguments parse. This file is the one place that says what a documented command is.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGS = ("bash", "sh", "shell", "console")
_FENCE = re.compile(r"^```\s*([\w-]*)")
#: What a reader replaces before running a command: ``<dir>``, ``<hf name or dir>``, ``<p>``.
PLACEHOLDER = re.compile(r"<[a-z][^<>\n]*>")
#: Commands that cannot run here as written, and why (a regex searched in the command).
SKIPS: tuple[tuple[str, str], ...] = (
    (r"^pip install", "installs packages from the network (`make install` does it once)"),
    (r"hydra=submitit_slurm", "needs a SLURM cluster"),
    (r"device=cuda|--device cuda", "needs a CUDA GPU"),
    (r"model\.pretrained=(bert-base-uncased|roberta-base)", "downloads a model from the Hub"),
)
_OPENERS = {"for", "while", "until", "if", "case", "{", "("}
_CLOSERS = {"done", "fi", "esac", "}", ")"}
_SEPARATORS = {";", "&", "&&", "||", "|", "do", "then", "else", "elif", "in"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    """A fenced shell block: its file (relative to the repository), first line and text."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class Command:
    """One documented command.

    Attributes:
        file: The Markdown file, relative to the repository root.
        line: Line of the command's first line in that file.
        text: The command as written (continued lines kept).
        setup: The variable assignments of its block that precede it (run first).
    """

    file: str
    line: int
    text: str
    setup: str = ""

    @property
    def label(self) -> str:
        return f"{self.file}:{self.line}"

    def script(self) -> str:
        """What bash runs: the block's assignments, then the command."""
        return f"{self.setup}\n{self.text}" if self.setup else self.text


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks(path: Path, root: Path = REPO_ROOT) -> list[Block]:
    """The shell blocks of one Markdown file (``console`` blocks: their ``$ `` lines only)."""
    found, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if fence and lang is None:
            lang, start, lines = fence.group(1) or "-", number + 1, []
        elif fence:
            if lang in SHELL_LANGS:
                text = _console(lines) if lang == "console" else "\n".join(lines)
                found.append(Block(str(path.relative_to(root)), start, text))
            lang = None
        elif lang is not None:
            lines.append(line)
    return found


def _console(lines: list[str]) -> str:
    """The commands of a console transcript (``$ `` lines and their continuations); other lines
    are output and become blank, so line numbers stay right."""
    out, continued = [], False
    for line in lines:
        if line.startswith("$ ") or continued:
            out.append(line[2:] if line.startswith("$ ") and not continued else line)
            continued = line.endswith("\\")
        else:
            out.append("")
    return "\n".join(out)


def _words(line: str) -> list[str]:
    """Shell words and operators of one line (comments dropped; quotes respected)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|(){}")
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: bash -n reports it
        return line.split()


def _depth_change(words: list[str]) -> int:
    """How many compound commands (``for``...``done``, ``if``...``fi``) a line opens, net."""
    depth, command_position = 0, True
    for word in words:
        if command_position and word in _OPENERS:
            depth += 1
        elif command_position and word in _CLOSERS:
            depth -= 1
        command_position = word in _SEPARATORS or word in _OPENERS or word in _CLOSERS
    return depth


def commands(block: Block) -> list[Command]:
    """The top-level commands of a block; its assignments become the later commands' setup."""
    found, setup = [], []
    current, logical, first, depth = [], [], 0, 0
    for offset, line in enumerate(block.text.splitlines()):
        if not current and not line.strip() or not current and line.lstrip().startswith("#"):
            continue
        if not current:
            first = block.line + offset
        current.append(line)
        logical.append(line.removesuffix("\\"))
        if line.endswith("\\"):
            continue
        depth += _depth_change(_words(" ".join(logical)))
        logical = []
        if depth > 0:
            continue
        text = "\n".join(current)
        words = _words(text.replace("\\\n", " "))
        if words and all(_ASSIGNMENT.match(w) for w in words):
            setup.append(text)
        else:
            found.append(Command(block.file, first, text, "\n".join(setup)))
        current = []
    if current:  # an unfinished compound command: bash -n reports it
        found.append(Command(block.file, first, "\n".join(current), "\n".join(setup)))
    return found


def all_blocks(root: Path = REPO_ROOT) -> list[Block]:
    return [b for path in doc_files(root) for b in blocks(path, root)]


def all_commands(root: Path = REPO_ROOT) -> list[Command]:
    return [c for b in all_blocks(root) for c in commands(b)]


def unset_variables(command: Command) -> list[str]:
    """The shell variables ``command`` reads that neither its block nor a ``for`` of its own sets
    (the prose says what they hold; export them to run it)."""
    script = re.sub(r"'[^']*'", "''", command.script())  # no expansion inside single quotes
    used = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", script)
    assigned = set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", script))
    assigned |= set(re.findall(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", script))
    return [v for v in dict.fromkeys(used) if v not in assigned]


def skip_reason(command: Command, environ: dict[str, str] | None = None) -> str | None:
    """Why ``command`` cannot run here as written (None: it can)."""
    filled = PLACEHOLDER.findall(command.script())
    if filled:
        return "has placeholders to fill in: " + ", ".join(dict.fromkeys(filled))
    environ = os.environ if environ is None else environ
    unset = [v for v in unset_variables(command) if v not in environ]
    if unset:
        return "reads " + ", ".join(f"${v}" for v in unset) + ", set by no command (export it)"
    flat = command.text.replace("\\\n", " ")
    for pattern, reason in SKIPS:
        if re.search(pattern, flat, re.M):
            return reason
    return None


def select(found: list[Command], patterns: list[str]) -> list[tuple[int, Command]]:
    """``(number, command)`` of the commands any pattern matches (all without patterns)."""
    numbered = list(enumerate(found, 1))
    if not patterns:
        return numbered
    regexes = [re.compile(p) for p in patterns]
    return [
        (n, c) for n, c in numbered if any(r.search(f"#{n} {c.label} {c.text}") for r in regexes)
    ]


def _one_line(command: Command, width: int = 100) -> str:
    text = " ".join(command.text.replace("\\\n", " ").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def run(command: Command, timeout: float | None) -> tuple[str, float]:
    """Run one command in bash from the repository root; ``(status, seconds)``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(["bash", "-c", command.script()], cwd=REPO_ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s", time.perf_counter() - start
    status = "ok" if done.returncode == 0 else f"failed (exit status {done.returncode})"
    return status, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """List or run the documented commands; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="List or run every shell command of README.md and docs/**/*.md as written."
    )
    parser.add_argument("patterns", nargs="*", metavar="PATTERN", help="regexes (any matches)")
    parser.add_argument("--list", action="store_true", help="list the commands, run nothing")
    parser.add_argument("--timeout", type=float, help="seconds per command (default: none)")
    args = parser.parse_args(argv)
    chosen = select(all_commands(), args.patterns)
    if not chosen:
        parser.error(f"no command matches {args.patterns}")
    results = []
    for n, command in chosen:
        reason = skip_reason(command)
        print(f"#{n} {command.label}  {_one_line(command)}", flush=True)
        if reason is not None:
            print(f"    skipped: {reason}", flush=True)
            results.append((n, command, f"skipped: {reason}", 0.0))
        elif not args.list:
            status, seconds = run(command, args.timeout)
            print(f"    {status} in {seconds:.1f} s", flush=True)
            results.append((n, command, status, seconds))
    if args.list:
        return 0
    print("\nsummary:")
    for n, command, status, seconds in results:
        print(f"  #{n:<3} {command.label:<42} {seconds:7.1f} s  {status}")
    failed = [r for r in results if not r[2].startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
