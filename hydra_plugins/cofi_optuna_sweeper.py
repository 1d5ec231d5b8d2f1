"""The Optuna sweeper of ``conf/hydra/sweeper/optuna_cofi.yaml``: a failed trial does not end the
study.

The plugin it wraps (``hydra_plugins.hydra_optuna_sweeper``, the ``[optuna]`` extra) already tells
Optuna that a trial whose job raised (or returned no number) has failed, then ends the whole study
unless ``max_failure_rate`` allows the failures of each batch of ``n_jobs`` trials; the preset
allows them all (``max_failure_rate: 1.0``). This sweeper adds what a long search needs on top:
every failed trial's job, overrides and error in ``<hydra.sweep.dir>/failed_trials.yaml`` (next to
the plugin's ``optimization_results.yaml``), and exit status 1 with one line when no trial
succeeded. Sampling and launching are the plugin's.

It lives here, beside ``train.py``, because Hydra instantiates sweepers only from the
``hydra_plugins`` namespace package; ``python train.py`` puts this directory on the path. Hydra
imports every module here at each start (before it registers the module: hence no
``from __future__ import annotations``, which a dataclass would look up), so the plugin is imported
only when this sweeper is used.
"""

import contextlib
import io
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

FAILED_FILE = "failed_trials.yaml"


@dataclass(frozen=True)
class FailedTrial:
    """One trial whose job raised: an entry of ``failed_trials.yaml``.

    Attributes:
        job: The Hydra job number in the sweep (the Optuna trial number of a new study).
        job_dir: The job's output dir (its ``train.log`` holds the traceback).
        overrides: The trial's overrides, its sampled values included.
        error: ``<exception type>: <message>``.
    """

    job: int
    job_dir: str | None
    overrides: list[str]
    error: str


def _not_a_value(value: Any) -> str | None:
    """Why Optuna fails a completed job's return value (None: a stage list without export; NaN:
    a diverged run), or None when it is a number for every objective."""
    values = value if isinstance(value, list | tuple) else [value]
    try:
        if not any(math.isnan(float(v)) for v in values):
            return None
    except (TypeError, ValueError):
        pass
    return f"the job returned {value!r}, not a number"


def _error(ret: JobReturn) -> str:
    """``<type>: <message>`` of a failed job's exception. ``JobReturn.return_value`` re-raises it
    and notes the job on stderr, which the plugin already does once for every failed trial."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ret.return_value  # noqa: B018  (raises the job's exception)
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return f"job status {ret.status.name}"


class _RecordingLauncher:
    """Launches through ``launcher``; keeps, per launched job, its failure (None: it succeeded)."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.outcomes: list[FailedTrial | None] = []

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        for idx, (overrides, ret) in enumerate(zip(job_overrides, returns, strict=True)):
            completed = ret.status == JobStatus.COMPLETED
            error = _not_a_value(ret.return_value) if completed else _error(ret)
            failed = None
            if error is not None:
                job_dir = None if ret.hydra_cfg is None else ret.hydra_cfg.hydra.runtime.output_dir
                failed = FailedTrial(initial_job_idx + idx, job_dir, list(overrides), error)
            self.outcomes.append(failed)
        return returns


class CofiOptunaSweeper(Sweeper):
    """The plugin's ``OptunaSweeper`` (same settings); failed trials are written down, and a study
    whose every trial failed exits with status 1."""

    def __init__(self, **settings: Any) -> None:
        # The [optuna] extra, imported when this sweeper is chosen (not at Hydra's plugin scan).
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.optuna = OptunaSweeper(**settings)
        self.recorder: _RecordingLauncher | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        impl = self.optuna.sweeper  # the plugin's implementation, which owns the launcher
        self.recorder = impl.launcher = _RecordingLauncher(impl.launcher)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        assert self.recorder is not None, "setup() first"
        outcomes = self.recorder.outcomes
        try:
            self.optuna.sweep(arguments)
        except Exception:
            if not (outcomes and all(outcomes)):
                raise
            # Every trial failed, so the plugin found no best trial: said below, in one line.
        finally:
            self._save_failures(outcomes)
        if outcomes and all(outcomes):
            # One line, as train.py says a user error (not a traceback of this sweeper).
            log.error("all %d trials failed: %s", len(outcomes), self.sweep_dir / FAILED_FILE)
            sys.exit(1)

    def _save_failures(self, outcomes: list[FailedTrial | None]) -> None:
        """Write ``failed_trials.yaml`` (an empty list when none failed)."""
        failed = [asdict(o) for o in outcomes if o is not None]
        path = self.sweep_dir / FAILED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(failed), path)
        if failed:
            log.warning("%d of %d trials failed: %s", len(failed), len(outcomes), path)
