"""Find the runs of a sweep: every ``results.json`` and every job that did not write one.

This file owns the walk over one or more sweep (or run) directories and what it yields: a
:class:`Run` per operating point of each valid ``results.json`` (``cofi_lightning.run.results``;
one point for a single target, one per target of a sparsity path, labelled
``<ablation> path``), plus an optional ``speedup`` from the results or from the point's
``speed*.json`` written by ``python -m cofi_lightning.tools.bench``) and a :class:`Problem` per job
that has a Hydra config but no results, per malformed ``results.json`` and per submitit job that
died before Hydra made its directory (why: ``diagnose.py``). It does not aggregate or render
(``tables.py``, ``plots.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cofi_lightning.run.results import flat_points
from cofi_lightning.tools.report.diagnose import (
    Problem,
    diagnose,
    orphan_submitit_jobs,
    overrides_of,
    read_yaml,
    stages_done,
)

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
#: Speed files beside results.json, in order of preference: ``python -m cofi_lightning.tools.bench
#: run=…`` writes ``speed_<device>_<dtype>.json``; a hand-written ``speed.json`` wins.
SPEED_FILES = ("speed.json", "speed_cuda_fp32.json", "speed_cpu_fp32.json")
_REQUIRED = ("task", "target_sparsity", "sparsity", "pruned", "main_metric")
ROW_FIELDS = (  # columns of results.csv, in order (Run.row)
    "task",
    "ablation",
    "target_sparsity",
    "sparsity",
    "main_metric",
    "teacher",
    "pruned",
    "speedup",
    "flop_ideal_speedup",
    "reached_target",
    "seed",
    "params_unpruned",
    "params_pruned",
    "hidden_size",
    "seconds",
    "export_dir",
    "run_dir",
)


@dataclass(frozen=True)
class Run:
    """One finished job, flattened from its ``results.json``.

    Args:
        run_dir: Directory of the ``results.json``.
        task: GLUE / SQuAD task name.
        ablation: Ablation name; ``"full"`` for full CoFi (``null`` in the results), with
            ``+original`` appended for a ``fidelity=original`` run; ``uniform`` for the baseline.
        target_sparsity: Configured target, a fraction in [0, 1) (a latency-constrained run,
            labelled ``<ablation> latency``: its target latency reduction ``1 - 1/speedup``).
        sparsity: Encoder sparsity measured on the exported model, a fraction.
        main_metric: Name of the task's main metric (key of ``pruned`` / ``teacher``).
        pruned: Main metric of the exported model, in percent.
        teacher: Main metric of the teacher, in percent (``None`` when no teacher was evaluated).
        seed: Training seed.
        speedup: Measured inference speedup over the unpruned model, if benchmarked.
        flop_ideal_speedup: FLOP-ideal speedup from the speed file, if any.
        reached_target: Whether an evaluation of the prune stage had its expected sparsity within
            epsilon of the target (``prune/DONE.json``); False means the closest evaluation was
            exported instead; None when unknown.
        point: The target as written in the run's paths (``0.75``) when the run is a sparsity
            path; None for a single-target run.
        raw: The parsed ``results.json`` (of a path: the shared keys with this point's keys).
    """

    run_dir: Path
    task: str
    ablation: str
    target_sparsity: float
    sparsity: float
    main_metric: str
    pruned: float
    teacher: float | None = None
    seed: int | None = None
    speedup: float | None = None
    flop_ideal_speedup: float | None = None
    reached_target: bool | None = None
    point: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        """One CSV row (:data:`ROW_FIELDS`): the fields above, parameters, hidden size, seconds."""
        params = self.raw.get("params") or {}
        structure = self.raw.get("structure") or {}
        seconds = self.raw.get("stage_seconds") or {}
        total = [v for v in seconds.values() if isinstance(v, int | float)]
        row = {
            "task": self.task,
            "ablation": self.ablation,
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "main_metric": self.main_metric,
            "teacher": self.teacher,
            "pruned": self.pruned,
            "speedup": self.speedup,
            "flop_ideal_speedup": self.flop_ideal_speedup,
            "reached_target": self.reached_target,
            "seed": self.seed,
            "params_unpruned": params.get("unpruned"),
            "params_pruned": params.get("pruned"),
            "hidden_size": structure.get("hidden_size"),
            "seconds": round(sum(total), 2) if total else None,
            "export_dir": self.raw.get("export_dir"),
            "run_dir": str(self.run_dir),
        }
        assert tuple(row) == ROW_FIELDS
        return row


def collect_runs(paths: str | Path | Iterable[str | Path]) -> tuple[list[Run], list[Problem]]:
    """Collect every run below ``paths`` (sweep dirs, run dirs, or a mix), recursively.

    Args:
        paths: One directory or several.

    Returns:
        The valid runs, sorted by task, ablation ("full" first), target and seed, and the problems,
        sorted by directory.

    Raises:
        FileNotFoundError: A path is not a directory.
    """
    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    hydra_dirs: set[Path] = set()
    result_dirs: set[Path] = set()
    submitit_dirs: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"not a directory: {root}")
        _walk(root.resolve(), hydra_dirs, result_dirs, submitit_dirs)

    runs: dict[Path, list[Run]] = {}
    problems: list[Problem] = []
    job_ids: set[str] = set()
    for job_dir in sorted(hydra_dirs):
        hydra = read_yaml(job_dir / ".hydra" / "hydra.yaml").get("hydra") or {}
        job_ids.add(str((hydra.get("job") or {}).get("id")))
        out_dir = _result_dir(job_dir, hydra)
        result_dirs.discard(out_dir)
        if (out_dir / RESULTS_FILE).is_file():
            _add_run(out_dir, runs, problems, job_dir)
        else:
            problems.append(diagnose(job_dir, out_dir, hydra))
    for out_dir in sorted(result_dirs):
        _add_run(out_dir, runs, problems, out_dir)
    for folder in sorted(submitit_dirs):
        problems.extend(orphan_submitit_jobs(folder, job_ids))
    ordered = sorted(
        (run for points in runs.values() for run in points),
        key=lambda r: (r.task, r.ablation != "full", r.ablation, r.target_sparsity, r.seed or 0),
    )
    ordered, duplicates = _split_duplicates(ordered)
    problems.extend(duplicates)
    return ordered, sorted(problems, key=lambda p: str(p.job_dir))


def _split_duplicates(runs: list[Run]) -> tuple[list[Run], list[Problem]]:
    """Keep one run per (task, ablation, target, seed); the others become ``duplicate`` problems.

    Rows are averaged over seeds, so two runs with the same key would count one configuration
    twice, or mix two (a sweep over a hyperparameter gives such runs, with different config hashes
    in their names). The first run by directory is kept; the report lists the others.
    """
    kept: dict[tuple, Run] = {}
    problems = []
    for run in sorted(runs, key=lambda r: str(r.run_dir)):
        key = (run.task, run.ablation, run.target_sparsity, run.seed)
        if key in kept:
            reason = (
                f"duplicate of {kept[key].run_dir} (same task, ablation, target and seed; not "
                "averaged as another seed). Runs of different hyperparameters: report each set "
                "of run directories separately"
            )
            problems.append(Problem(run.run_dir, "duplicate", reason, stages_done(run.run_dir)))
        else:
            kept[run.task, run.ablation, run.target_sparsity, run.seed] = run
    ids = {id(r) for r in kept.values()}
    return [r for r in runs if id(r) in ids], problems


def parse_results(path: Path) -> list[Run]:
    """Read one ``results.json`` (and the speed files beside it) into a :class:`Run` per
    operating point.

    Raises:
        ValueError: The file is not JSON or lacks a required key or value; the message says which.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path.name}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not an object")
    if data.get("operating_points") is not None and not isinstance(data["operating_points"], list):
        raise ValueError(f"{path.name}: operating_points is not a list")
    records = flat_points(data)
    path_run = len(records) > 1
    points = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path.name}: an operating point is not an object")
        label = f"{record.get('target_sparsity'):g}" if path_run else None
        points.append(_parse_point(path, record, label))
    return points


def _parse_point(path: Path, data: dict[str, Any], label: str | None) -> Run:
    """One operating point (``label``: its target on a path, None for a single target)."""
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path.name} lacks {', '.join(missing)}")
    main = data["main_metric"]
    pruned = data["pruned"] if isinstance(data["pruned"], dict) else {}
    if main not in pruned:
        raise ValueError(f"pruned metrics lack the main metric {main!r}")
    teacher = data.get("teacher") if isinstance(data.get("teacher"), dict) else {}
    speed = _read_speed(path.parent, "" if label is None else f"_{label}")
    variant = _variant(data)
    latency = data.get("latency") if isinstance(data.get("latency"), dict) else {}
    if data.get("constraint") == "latency" and latency.get("target_speedup"):
        # a speed target: the row's target is the latency reduction 1 - 1/x, not the parameter
        # target (null; older runs recorded the config's unused value)
        target = 1.0 - 1.0 / float(latency["target_speedup"])
        variant = f"{variant} latency"
    else:
        target = _number(data, "target_sparsity")
    return Run(
        run_dir=path.parent,
        task=str(data["task"]),
        ablation=variant if label is None else f"{variant} path",
        target_sparsity=target,
        sparsity=_number(data, "sparsity"),
        main_metric=str(main),
        pruned=_number(pruned, main, "pruned."),
        teacher=_number(teacher, main, "teacher.") if main in teacher else None,
        seed=int(data["seed"]) if isinstance(data.get("seed"), int) else None,
        speedup=_optional_number(data.get("speedup", speed.get("speedup"))),
        flop_ideal_speedup=_optional_number(speed.get("flop_ideal_speedup")),
        reached_target=_reached_target(path.parent, label),
        point=label,
        raw=data,
    )


# --- walking the tree -----------------------------------------------------------------------------


def _walk(root: Path, hydra_dirs: set, result_dirs: set, submitit_dirs: set) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if (here / ".hydra" / "config.yaml").is_file():
            hydra_dirs.add(here)
        if RESULTS_FILE in filenames:
            result_dirs.add(here)
        if ".submitit" in dirnames:
            submitit_dirs.add(here / ".submitit")
        # Hidden dirs hold Hydra / submitit / W&B bookkeeping, never another job.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]


def _result_dir(job_dir: Path, hydra: dict) -> Path:
    """Where the job writes ``results.json``: its ``run_dir`` override, else the Hydra dir."""
    run_dir = read_yaml(job_dir / ".hydra" / "config.yaml").get("run_dir")
    if not isinstance(run_dir, str) or not run_dir or "${" in run_dir:
        return job_dir
    # A relative run_dir is relative to where the job was launched (hydra.job.chdir is false).
    cwd = (hydra.get("runtime") or {}).get("cwd") or os.getcwd()
    return (Path(cwd) / run_dir).resolve()


def _add_run(out_dir: Path, runs: dict[Path, list[Run]], problems: list, job_dir: Path) -> None:
    if out_dir in runs:
        return
    try:
        runs[out_dir] = parse_results(out_dir / RESULTS_FILE)
    except ValueError as err:
        problems.append(
            Problem(job_dir, "malformed", str(err), stages_done(out_dir), overrides_of(job_dir))
        )


# --- small readers --------------------------------------------------------------------------------


def _read_speed(run_dir: Path, suffix: str = "") -> dict[str, Any]:
    """The preferred speed file of a run (see :data:`SPEED_FILES`, then any ``speed_*.json``), or
    of one point of a sparsity path (``suffix`` ``_<t>``: ``speed_*_<t>.json``)."""
    candidates = [run_dir / name.replace(".json", f"{suffix}.json") for name in SPEED_FILES]
    candidates += sorted(run_dir.glob(f"speed_*{suffix}.json"))
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignoring unreadable %s: %s", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def prune_best(run_dir: Path, label: str | None = None) -> dict[str, Any]:
    """The ``best`` record of the prune stage's DONE.json (the exported evaluation: step, metric,
    sparsities, reached_target), of the target ``label`` on a sparsity path; empty if the file is
    absent or unreadable."""
    try:
        best = json.loads((Path(run_dir) / "prune" / "DONE.json").read_text()).get("best")
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    if label is not None and isinstance(best, dict):
        best = best.get(label)
    return best if isinstance(best, dict) else {}


def _reached_target(run_dir: Path, label: str | None = None) -> bool | None:
    """``best.reached_target`` of the prune stage (of one target of a path), None if unknown."""
    value = prune_best(run_dir, label).get("reached_target")
    return value if isinstance(value, bool) else None


def _number(data: dict, key: str, prefix: str = "") -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{prefix}{key} is {value!r}, not a number")
    return float(value)


def _optional_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _variant(data: dict) -> str:
    """The run's row label: its ablation (``full`` for full CoFi), suffixed ``+original`` when
    it ran with the original code's training choices (``fidelity=original``); the method for
    another ``pruning.method`` than CoFi (``uniform``, ``posttrain``)."""
    if data.get("method") not in (None, "cofi"):
        return str(data["method"])
    ablation = str(data.get("ablation") or "full")
    fidelity = data.get("fidelity") or "ours"
    return ablation if fidelity == "ours" else f"{ablation}+{fidelity}"
