"""Find the runs of a sweep: every ``results.json`` and every job that did not write one.

A :class:`Run` per operating point of each valid ``results.json`` (read with
``cofi_lightning.run.results.flat_points``), a :class:`Problem` per job without results, per
malformed ``results.json`` and per submitit job that died before Hydra started (why:
``diagnose.py``). It does not aggregate or render (``tables.py``, ``plots.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
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
_NOT_IN_CSV = {"csv": False}


@dataclass(frozen=True, kw_only=True)
class Run:
    """One operating point of a finished job; every field but the last two is a column of
    ``results.csv``, in this order.

    Attributes:
        ablation: The row label (:func:`_variant`), ``<label> latency`` for a latency target
            (``target_sparsity``: the target latency reduction ``1 - 1/speedup``), ``<label>
            path`` for a point of a sparsity path (``point``: its target as in file names).
        reached_target: ``best.reached_target`` of ``prune/DONE.json``: False when no evaluation
            came within epsilon of the target (the closest was exported); None when unknown.
    """

    task: str
    ablation: str
    target_sparsity: float
    sparsity: float
    main_metric: str
    teacher: float | None = None
    pruned: float
    speedup: float | None = None
    flop_ideal_speedup: float | None = None
    reached_target: bool | None = None
    seed: int | None = None
    params_unpruned: int | None = None
    params_pruned: int | None = None
    hidden_size: int | None = None
    seconds: float | None = None
    export_dir: str | None = None
    run_dir: Path
    point: str | None = field(default=None, metadata=_NOT_IN_CSV)
    structure: dict[str, Any] = field(
        default_factory=dict, repr=False, compare=False, metadata=_NOT_IN_CSV
    )

    def row(self) -> dict[str, Any]:
        """One row of ``results.csv`` (:data:`CSV_COLUMNS`)."""
        return {name: getattr(self, name) for name in CSV_COLUMNS} | {"run_dir": str(self.run_dir)}


CSV_COLUMNS = tuple(f.name for f in fields(Run) if f.metadata.get("csv", True))


def collect_runs(paths: str | Path | Iterable[str | Path]) -> tuple[list[Run], list[Problem]]:
    """Every run below ``paths`` (sweep or run dirs), sorted by task, ablation ("full" first),
    target and seed, and the problems, sorted by directory.

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

    Rows are averaged over seeds, so two runs with the same key (a sweep over a hyperparameter)
    would count one configuration twice, or mix two. The first run by directory is kept.
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
            kept[key] = run
    ids = {id(r) for r in kept.values()}
    return [r for r in runs if id(r) in ids], problems


def parse_results(path: Path) -> list[Run]:
    """Read one ``results.json`` (and the speed files beside it) into a :class:`Run` per
    operating point; a ValueError says what is missing or malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path.name}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not an object")
    if data.get("operating_points") is not None and not isinstance(data["operating_points"], list):
        raise ValueError(f"{path.name}: operating_points is not a list")
    records = flat_points(data)
    points = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path.name}: an operating point is not an object")
        label = f"{record.get('target_sparsity'):g}" if len(records) > 1 else None
        points.append(_parse_point(path, record, label))
    return points


def _parse_point(path: Path, data: dict[str, Any], label: str | None) -> Run:
    """One operating point (``label``: its target on a path, None for a single target)."""
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path.name} lacks {', '.join(missing)}")
    main = data["main_metric"]
    pruned = _dict(data, "pruned")
    if main not in pruned:
        raise ValueError(f"pruned metrics lack the main metric {main!r}")
    teacher = _dict(data, "teacher")
    speed = _read_speed(path.parent, "" if label is None else f"_{label}")
    variant = _variant(data, path.parent)
    latency = _dict(data, "latency")
    if data.get("constraint") == "latency" and latency.get("target_speedup"):
        # a speed target: the row's target is the latency reduction 1 - 1/x, not the parameter
        # target (null; older runs recorded the config's unused value)
        target = 1.0 - 1.0 / float(latency["target_speedup"])
        variant = f"{variant} latency"
    else:
        target = _required(data, "target_sparsity")
    params, structure = _dict(data, "params"), _dict(data, "structure")
    seconds = [v for v in _dict(data, "stage_seconds").values() if isinstance(v, int | float)]
    return Run(
        run_dir=path.parent,
        task=str(data["task"]),
        ablation=variant if label is None else f"{variant} path",
        target_sparsity=target,
        sparsity=_required(data, "sparsity"),
        main_metric=str(main),
        pruned=_required(pruned, main, "pruned."),
        teacher=_required(teacher, main, "teacher.") if main in teacher else None,
        seed=int(data["seed"]) if isinstance(data.get("seed"), int) else None,
        speedup=_number(data.get("speedup", speed.get("speedup"))),
        flop_ideal_speedup=_number(speed.get("flop_ideal_speedup")),
        reached_target=_reached_target(path.parent, label),
        params_unpruned=params.get("unpruned"),
        params_pruned=params.get("pruned"),
        hidden_size=structure.get("hidden_size"),
        seconds=round(sum(seconds), 2) if seconds else None,
        export_dir=data.get("export_dir"),
        point=label,
        structure=structure,
    )


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


def _read_speed(run_dir: Path, suffix: str) -> dict[str, Any]:
    """The preferred speed file of a run (:data:`SPEED_FILES`, then any ``speed_*.json``), or of
    one point of a sparsity path (``suffix`` ``_<t>``: ``speed_*_<t>.json``)."""
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
    """The ``best`` record of ``prune/DONE.json`` (of the target ``label`` on a sparsity path);
    empty if the file is absent or unreadable."""
    try:
        best = json.loads((Path(run_dir) / "prune" / "DONE.json").read_text()).get("best")
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    if label is not None and isinstance(best, dict):
        best = best.get(label)
    return best if isinstance(best, dict) else {}


def _reached_target(run_dir: Path, label: str | None) -> bool | None:
    value = prune_best(run_dir, label).get("reached_target")
    return value if isinstance(value, bool) else None


def _dict(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """``value`` as a float; None for anything else (a bool, NaN, a string, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _required(data: dict, key: str, prefix: str = "") -> float:
    value = _number(data.get(key))
    if value is None:
        raise ValueError(f"{prefix}{key} is {data.get(key)!r}, not a number")
    return value


#: The row label's suffix of each warm start (``pruning.<key>=<value>`` in the run's
#: ``config.yaml``), in this order, and the methods it changes: the uniform baseline can start
#: from the teacher too, post-training pruning always does and draws no masks.
WARM_STARTS = {
    ("student_init", "teacher"): ("teacher_init", ("cofi", "uniform")),
    ("mask_init", "posttrain"): ("posttrain_masks", ("cofi",)),
}


def _variant(data: dict, run_dir: Path) -> str:
    """The run's row label: its ablation (``full`` for full CoFi) or its method if another than
    CoFi (``uniform``, ``posttrain``), suffixed ``+<fidelity>`` unless of the default fidelity and
    ``+<warm start>`` for each of :data:`WARM_STARTS` that changed what the run did (read from the
    run's ``config.yaml``)."""
    method = data.get("method") or "cofi"
    if method != "cofi":
        label = str(method)
    else:
        label = str(data.get("ablation") or "full")
        fidelity = data.get("fidelity") or "ours"
        if fidelity != "ours":
            label += f"+{fidelity}"
    pruning = read_yaml(run_dir / "config.yaml").get("pruning") or {}
    for (key, value), (suffix, methods) in WARM_STARTS.items():
        if method in methods and pruning.get(key) == value:
            label += f"+{suffix}"
    return label
