"""Every shell command of README.md and docs/**/*.md is valid as written, checked without running
it: bash parses each block; ``python train.py`` overrides compose and validate (Hydra's compose
API, no training); ``python -m cofi_lightning.<tool>`` and ``python bench/<script>.py`` arguments
parse; ``make`` targets and scripts exist. ``scripts/doc_commands.py`` (which finds the
commands) runs them for real.

Each block runs once in a bash whose ``python``, ``bash``, ``make`` and ``pip`` only record their
arguments and whose ``PATH`` is empty, so loops, variables and quoting expand exactly as in a
terminal and nothing else can run. Placeholders (``<dir>``) and variables the docs leave to the
reader (``$T``) become ``PLACEHOLDER``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import runpy
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
FILLER = "PLACEHOLDER"


def _load_doc_commands():
    spec = importlib.util.spec_from_file_location(
        "doc_commands", REPO_ROOT / "scripts/doc_commands.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


doc = _load_doc_commands()

_STUBS = r"""
# one write per invocation: background jobs (`cmd &`) may record at the same time
__record() { printf '\036%s' "$(printf '%s\037' "$@")" >> "$DOC_RECORD"; }
python() { __record python "$@"; }
bash() { __record bash "$@"; }
make() { __record make "$@"; }
pip() { __record pip "$@"; }
command_not_found_handle() { __record "?" "$@"; }
PATH=/nonexistent
"""


def _filled(text: str, commands: list) -> str:
    """``text`` with placeholders and reader-set variables replaced by ``PLACEHOLDER``."""
    unset = {v for c in commands for v in doc.unset_variables(c)}
    return "".join(f"{v}={FILLER}\n" for v in sorted(unset)) + doc.PLACEHOLDER.sub(FILLER, text)


def _invocations(block, tmp_path: Path) -> list[list[str]]:
    """What the block's commands would run, one argv each (see the module docstring)."""
    record = tmp_path / "record"
    record.write_bytes(b"")
    done = subprocess.run(
        ["bash", "-c", _STUBS + _filled(block.text, doc.commands(block))],
        cwd=tmp_path,  # globs such as runs/*/ match nothing; nothing lands in the repository
        env={"DOC_RECORD": str(record), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"{block.file}:{block.line}: {done.stderr.strip()}"
    raw = record.read_bytes().decode()
    return [entry.split("\x1f")[:-1] for entry in raw.split("\x1e")[1:]]


# ---- the checks of one invocation; each returns a problem or None ----------------------------


def _expand(override) -> list[str]:
    """The values a multirun gives one parsed override: each of ``a,b`` / ``range()``; a
    ``glob()``'s first match (every experiment x ablation composes in test_configs.py)."""
    from hydra.core.override_parser.types import Glob

    key, value = override.get_key_element(), override.value()
    if isinstance(value, Glob):
        options = sorted(p.stem for p in (CONF / override.key_or_group).glob("*.yaml"))
        matches = value.filter(options)
        return [f"{key}={matches[0]}"] if matches else []
    if override.is_sweep_override():
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    return [override.input_line]


def _train_variants(args: list[str]) -> list[list[str]] | str:
    """The override lists to compose: one, or for ``-m`` each sweep value once (the other sweeps
    at their first value), so a bad value anywhere is composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = any(a in ("-m", "--multirun") for a in args)
    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if flags:
        return f"train.py flags this check does not know: {flags}"
    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    choices = [_expand(o) for o in parsed]
    if not multirun and any(o.is_sweep_override() for o in parsed):
        return "a sweep (a,b / glob / range) without -m"
    empty = [o.input_line for c, o in zip(choices, parsed, strict=True) if not c]
    if empty:
        return f"sweeps over nothing: {empty}"
    first = [c[0] for c in choices]
    variants = [first]
    for i, values in enumerate(choices):
        variants += [first[:i] + [v] + first[i + 1 :] for v in values[1:]]
    return variants


@contextmanager
def _hydra():
    """Hydra's compose context on ``conf/`` (set up once: it is what a compose costs most)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def _check_train(args: list[str]) -> str | None:
    from hydra import compose
    from omegaconf import open_dict

    import cofi_lightning.config  # noqa: F401  (the schema and the cofi.* resolvers)
    from cofi_lightning.config import load_config

    variants = _train_variants(args)
    if isinstance(variants, str):
        return variants
    with _hydra():
        for overrides in variants:
            hydra_keys = any(o.lstrip("+~").startswith("hydra") for o in overrides)
            try:
                cfg = compose("train", overrides=overrides, return_hydra_config=hydra_keys)
                if hydra_keys:
                    with open_dict(cfg):
                        del cfg["hydra"]
                load_config(cfg)
            except Exception as err:  # noqa: BLE001  (any failure is the finding)
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                return f"{' '.join(overrides)}: {type(err).__name__}: {message}"
    return None


class _Parsed(Exception):
    """Raised by the patched ``ArgumentParser.parse_args``: parsing succeeded, stop there."""


def _check_cli(target: str, args: list[str], *, module: bool) -> str | None:
    """Parse ``args`` as the module or script ``target`` would, without running it: its own
    ``parse_args(argv)`` when it has one (every check included), else ``main()`` stopped right
    after argparse."""
    if not module and not (REPO_ROOT / target).is_file():
        return f"no such script {target}"
    out, err = StringIO(), StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            if module:
                cli = importlib.import_module(f"{target}.__main__")
                if hasattr(cli, "parse_args"):
                    cli.parse_args(args)
                    return None
            _run_until_parsed(target, args, main=cli.main if module else None)
    except _Parsed:
        return None
    except SystemExit as exit_:
        lines = (err.getvalue() or str(exit_.code)).strip().splitlines()
        return f"arguments rejected (exit {exit_.code}): {lines[-1] if lines else ''}"
    return None


def _run_until_parsed(target: str, args: list[str], *, main=None) -> None:
    """``main(args)``, or the script ``target`` as ``__main__``, stopped once argparse is done."""
    real = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, argv=None, namespace=None):
        parsed, extra = real(self, argv, namespace)
        if extra:
            return parsed, extra  # parse_args reports them (status 2)
        raise _Parsed

    saved = sys.argv
    sys.argv = [target, *args]
    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        if main is not None:
            main(args)
        else:
            runpy.run_path(str(REPO_ROOT / target), run_name="__main__")
    finally:
        argparse.ArgumentParser.parse_known_args = real
        sys.argv = saved


def _check_python(args: list[str]) -> str | None:
    if args[:1] == ["train.py"]:
        return _check_train(args[1:])
    if args[:1] == ["-m"] and len(args) > 1:
        if not args[1].startswith("cofi_lightning."):
            return f"python -m {args[1]}: not a tool of this package"
        return _check_cli(args[1], args[2:], module=True)
    if args[:1] == ["-c"] and len(args) > 1:
        compile(args[1], "<python -c>", "exec")
        return None
    if args and args[0].endswith(".py"):
        return _check_cli(args[0], args[1:], module=False)
    return f"python {args}: a form this check does not know"


def _check_bash(args: list[str]) -> str | None:
    script = REPO_ROOT / args[0]
    if not script.is_file():
        return f"no such script {args[0]}"
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    if parsed.returncode:
        return f"{args[0]}: {parsed.stderr.strip()}"
    return None


def _check_make(args: list[str]) -> str | None:
    targets = set(re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(), re.M))
    unknown = [a for a in args if not a.startswith("-") and a not in targets]
    return f"no make target {unknown}" if unknown else None


def _check_pip(args: list[str]) -> str | None:
    """Only the ``install`` forms the README shows: pinned packages and this project's extras."""
    import tomllib

    from packaging.requirements import Requirement

    if args[:1] != ["install"]:
        return f"pip {args}: a form this check does not know"
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {}
    )
    for arg in args[1:]:
        if arg == "-e":
            continue
        if arg.startswith("."):
            missing = set(re.findall(r"[\w-]+", arg.partition("[")[2])) - set(extras)
            if missing:
                return f"pip install {arg}: pyproject.toml has no extra {sorted(missing)}"
        else:
            Requirement(arg)
    return None


CHECKS = {
    "python": _check_python,
    "bash": _check_bash,
    "make": _check_make,
    "pip": _check_pip,
}


def problems_of(block, tmp_path: Path) -> list[str]:
    """Every problem of one block, each ``file:line: what``."""
    where = f"{block.file}:{block.line}"
    found = []
    for command in doc.commands(block):
        script = _filled(command.script(), [command])
        parsed = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        if parsed.returncode:
            error = parsed.stderr.strip().splitlines()[0].removeprefix("bash: ")
            found.append(f"{command.label}: bash cannot parse it: {error}")
    if found:
        return found
    for argv in _invocations(block, tmp_path):
        check = CHECKS.get(argv[0])
        problem = check(argv[1:]) if check else f"runs {argv[1:2]}, which no check knows"
        if problem:
            found.append(f"{where}: {' '.join(argv)[:80]}: {problem}")
    return found


# ---- the tests ------------------------------------------------------------------------------


def test_every_documented_command_is_valid_as_written(tmp_path):
    blocks = doc.all_blocks()
    assert len(blocks) >= 10 and any(b.file == "README.md" for b in blocks)
    with _hydra():
        problems = [p for block in blocks for p in problems_of(block, tmp_path)]
    assert not problems, "\n".join(problems)


def _block(text: str, tmp_path: Path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"Intro.\n\n```bash\n{text}\n```\n")
    (block,) = doc.blocks(page, tmp_path)
    return block


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("python train.py -m experiment=demo ablation=glob(*)", "bash cannot parse it"),
        ("python train.py pruning.target_sparsty=0.5", "ConfigCompositionException"),
        ("python train.py ablation=no_heads", "Could not find 'ablation/no_heads'"),
        ("python train.py -m pruning.target_sparsity=0.5,1.5", "target_sparsity must be in"),
        ("python train.py task=rte,mrpc", "without -m"),
        ("python -m cofi_lightning.tools.bench synthetic=s95 batch=0", "arguments rejected"),
        ("python -m cofi_lightning.latency profile --moddel x", "arguments rejected"),
        ("python scripts/round_widths.py --multiple", "arguments rejected"),
        ("bash scripts/no_such_check.sh", "no such script"),
        ("python scripts/sst2_study.py compare --budgte 1000", "arguments rejected"),
        ("make demo-exactly", "no make target"),
        ("rm -rf outputs", "no check knows"),
    ],
)
def test_a_broken_command_is_reported(tmp_path, text, problem):
    (found,) = problems_of(_block(text, tmp_path), tmp_path)
    assert found.startswith("docs/page.md:4") and problem in found


def test_commands_are_split_as_a_shell_reads_them(tmp_path):
    block = _block(
        "# a comment line\n"
        "T=runs/teacher  # set for what follows\n"
        "python train.py a=1 \\\n    b=2   # continued\n"
        "for t in 0.6 \\\n    0.9; do\n  python train.py x=$t\ndone; wait\n"
        "make demo",
        tmp_path,
    )
    found = doc.commands(block)
    assert [(c.line, c.text.split()[0]) for c in found] == [(6, "python"), (8, "for"), (12, "make")]
    assert (
        found[1].text.endswith("done; wait")
        and found[1].setup == "T=runs/teacher  # set for what follows"
    )
    assert doc.skip_reason(found[2], environ={}) is None
    uses_t = doc.Command("f.md", 1, "python train.py distill.teacher=$T 'x=${y}'")
    assert doc.unset_variables(uses_t) == ["T"]
    assert "reads $T" in doc.skip_reason(uses_t, environ={})
    assert doc.skip_reason(uses_t, environ={"T": "x"}) is None
    console = tmp_path / "console.md"
    console.write_text("```console\n$ make test\n3 passed\n$ python -m x \\\n  --y\n```\n")
    (block,) = doc.blocks(console, tmp_path)
    assert [(c.line, c.text) for c in doc.commands(block)] == [
        (2, "make test"),
        (4, "python -m x \\\n  --y"),
    ]
