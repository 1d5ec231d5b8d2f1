"""Say why a job has no usable results: finished stages, the error in its logs, or the parse error.

The evidence: ``<stage>/DONE.json`` records, the job's Hydra overrides, the end of its submitit
logs (``.submitit/<hydra.job.id>/*_log.err`` and ``*_log.out``: on SLURM the job's stderr and
stdout) and of Hydra's ``<job name>.log``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cofi_lightning.config.schema import STAGES

log = logging.getLogger(__name__)

# A Python exception line ("ValueError: ...", "torch.OutOfMemoryError: ..."), preferred over
# launcher noise such as "srun: error: ... Exited with exit code 1" printed after it.
_EXCEPTION_LINE = re.compile(r"^\s*[\w.]*(Error|Exception|Interrupt|Exit)\b(:.*)?$")
_ERROR_LINE = re.compile(r"Traceback|Error\b|error:|\bERROR\b|CANCELLED|Killed|[Oo]ut of memory")
_LOG_TAIL_BYTES = 64 * 1024  # only the end of a log matters; logs of long runs are large


@dataclass(frozen=True)
class Problem:
    """A job that yields no run; listed in the report, never dropped.

    Attributes:
        job_dir: The job's directory (Hydra's, or the submitit folder for a job without one).
        status: ``"failed"`` (an error was found), ``"malformed"`` (unreadable ``results.json``),
            ``"missing"`` (no results and no error: still running, killed, or no export stage) or
            ``"duplicate"`` (a second run of the same task, ablation, target and seed).
        reason: What went wrong, or the last log line.
        logs: The job's submitit logs (its SLURM stderr and stdout), where a reader goes next.
    """

    job_dir: Path
    status: str
    reason: str
    stages_done: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    logs: tuple[Path, ...] = ()


def diagnose(job_dir: Path, out_dir: Path, hydra: dict) -> Problem:
    """The :class:`Problem` of a Hydra job without ``results.json`` in ``out_dir`` (its
    ``run_dir``, usually ``job_dir``); ``hydra`` is the ``hydra`` node of its ``hydra.yaml``."""
    done = stages_done(out_dir)
    slurm = _submitit_logs(job_dir, str((hydra.get("job") or {}).get("id")))
    # stderr first (tracebacks), then Hydra's <job name>.log, then stdout (the console log)
    errors = [p for p in slurm if p.name.endswith("_log.err")]
    error, last = _scan_logs([*errors, *sorted(job_dir.glob("*.log")), *slurm[len(errors) :]])
    where = "" if out_dir == job_dir else f" in {out_dir}"
    if error:
        return Problem(job_dir, "failed", error, done, overrides_of(job_dir), slurm)
    requested = read_yaml(job_dir / ".hydra" / "config.yaml").get("stages")
    if isinstance(requested, list) and "export" not in requested and set(requested) <= set(done):
        reason = f"no results.json{where}: stages {', '.join(map(str, requested))} requested"
    else:
        reason = f"no results.json{where} (still running, killed or lost)"
        if last:
            reason += f"; last log line: {last}"
    return Problem(job_dir, "missing", reason, done, overrides_of(job_dir), slurm)


def orphan_submitit_jobs(folder: Path, known_ids: set[str]) -> list[Problem]:
    """Submitit jobs that started (they have logs) but never wrote a Hydra job dir."""
    problems = []
    for job in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in known_ids):
        logs = _logs_in(job)
        if not logs:
            continue  # submitted, not started: nothing to say yet
        error, last = _scan_logs(logs)
        status = "failed" if error else "missing"
        reason = error or f"no Hydra job dir; last log line: {last or '(empty)'}"
        problems.append(Problem(job, status, reason, logs=logs))
    return problems


def _submitit_logs(job_dir: Path, job_id: str) -> tuple[Path, ...]:
    """The job's logs in ``.submitit/<job id>/`` of the sweep dir (an ancestor of the job dir)."""
    if not job_id or job_id in ("???", "None"):
        return ()
    for parent in list(job_dir.parents)[:4]:
        folder = parent / ".submitit" / job_id
        if folder.is_dir():
            return _logs_in(folder)
    return ()


def _logs_in(folder: Path) -> tuple[Path, ...]:
    """A submitit job folder's logs, one per task: every ``*_log.err``, then every ``*_log.out``."""
    return (*sorted(folder.glob("*_log.err")), *sorted(folder.glob("*_log.out")))


def _scan_logs(paths: list[Path]) -> tuple[str | None, str | None]:
    """The most telling error line of the first log that has one, and the last non-empty line."""
    last = None
    for path in paths:
        lines = [ln.strip() for ln in _tail(path).splitlines() if ln.strip()]
        if not lines:
            continue
        last = last or _clip(lines[-1])
        for pattern in (_EXCEPTION_LINE, _ERROR_LINE):
            hits = [ln for ln in lines if pattern.search(ln)]
            if hits:
                return f"{_clip(hits[-1])} ({path.name})", last
    return None, last


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _clip(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def stages_done(run_dir: Path) -> tuple[str, ...]:
    """The stages of ``run_dir`` with a ``DONE.json``, in pipeline order (unknown ones last)."""
    names = {p.parent.name for p in run_dir.glob("*/DONE.json")}
    rank = {name: i for i, name in enumerate(STAGES)}
    return tuple(sorted(names, key=lambda n: (rank.get(n, len(rank)), n)))


def overrides_of(job_dir: Path) -> tuple[str, ...]:
    """The job's command-line overrides (``.hydra/overrides.yaml``); empty if there are none."""
    data = read_yaml(job_dir / ".hydra" / "overrides.yaml", default=[])
    return tuple(map(str, data)) if isinstance(data, list) else ()


def read_yaml(path: Path, default: Any = None) -> Any:
    """Parse YAML without resolving interpolations; ``default`` ({}) if absent or unreadable."""
    default = {} if default is None else default
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        if path.exists():
            log.warning("cannot read %s: %s", path, err)
        return default
    return default if data is None or type(data) is not type(default) else data
