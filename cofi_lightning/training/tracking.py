"""The job's one Weights & Biases run, shared by the Lightning trainers of all its stages: keys
``<stage>/<key>`` plotted against a per-stage step ``<stage>/step`` (every stage's trainer restarts
its ``global_step`` at 0), ``results.json`` in the run summary and each export as a ``model``
artifact. Rank 0 only; ``wandb`` is imported on first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from cofi_lightning.modeling.structure import Structure

if TYPE_CHECKING:
    import wandb

#: Columns of the exported structure table (``export/structure``).
STRUCTURE_COLUMNS = ("layer", "heads", "ffn_dims", "hidden")


def artifact_name(run_name: str, target: str) -> str:
    """The model artifact of one export: ``<run name>-<target>``, any character W&B refuses in
    a name (it allows ``[A-Za-z0-9._-]``) written as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{run_name}-{target}")


@runtime_checkable
class MediaLogger(Protocol):
    """A logger that also takes tables and images (:class:`StageLogger`, Lightning's
    ``WandbLogger``); ``step=None`` means "with the metrics logged last" for a StageLogger."""

    def log_table(
        self, key: str, columns: list[str], data: list[list[Any]], step: int | None = None
    ) -> None: ...

    def log_image(self, key: str, paths: list[str], step: int | None = None) -> None: ...


class WandbRun:
    """One W&B run for a whole job; ``wandb.init`` runs on first use, on global rank 0 only.

    The first arguments are the ``conf/logger/wandb.yaml`` node; the pipeline adds the rest
    (``run_dir``, under which W&B writes ``wandb/``; ``run_id``, with which a restarted job resumes
    the run; the resolved ``config``).
    """

    def __init__(
        self,
        *,
        project: str = "cofi-lightning",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
        tags: Sequence[str] = (),
        job_type: str = "cofi",
        run_dir: str | Path,
        name: str,
        run_id: str,
        config: Mapping[str, Any],
    ) -> None:
        self.run_dir = Path(run_dir)
        self.name, self.run_id = name, run_id
        self._init = dict(
            project=project,
            entity=entity,
            mode=mode,
            group=group,
            tags=list(tags),
            job_type=job_type,
            name=name,
            id=run_id,
            resume="allow",
            config=dict(config),
        )
        self._run: wandb.Run | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> wandb.Run:
        """The live ``wandb.Run``, started on first access (a no-op stand-in off rank 0)."""
        if self._run is None:
            import wandb

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._run = wandb.init(dir=str(self.run_dir), **self._init)
        return self._run

    def stage_logger(self, stage: str) -> StageLogger:
        return StageLogger(self, stage)

    @rank_zero_only
    def log_results(self, results: Mapping[str, Any], heatmap: str | Path | None = None) -> None:
        """Put ``results`` (``Results.to_dict()``) into the run summary, its structure as the
        table ``export/structure``, and the ``heatmap`` PNG as ``export/structure_heatmap``."""
        import wandb

        run = self.experiment
        run.summary.update(dict(results))
        media: dict[str, Any] = {}
        if results.get("structure"):
            rows = Structure.from_dict(results["structure"]).rows()
            data = [[row[c] for c in STRUCTURE_COLUMNS] for row in rows]
            media["export/structure"] = wandb.Table(columns=list(STRUCTURE_COLUMNS), data=data)
        if heatmap is not None:
            media["export/structure_heatmap"] = wandb.Image(str(heatmap))
        if media:
            run.log(media)

    @rank_zero_only
    def log_export(
        self, export_dir: str | Path, run_name: str, target: str, seed: int
    ) -> wandb.Artifact:
        """Log an export directory (weights, card, ONNX files when made) as a ``model`` artifact
        named :func:`artifact_name`, with the aliases ``target`` (``s0.6``, ``x2.0``),
        ``seed<seed>`` and ``latest``; through the run itself, so offline runs keep it too
        (Lightning's ``log_model`` refuses them). Returns the artifact."""
        import wandb

        artifact = wandb.Artifact(artifact_name(run_name, target), type="model")
        artifact.add_dir(str(export_dir))
        return self.experiment.log_artifact(artifact, aliases=[target, f"seed{seed}", "latest"])

    @rank_zero_only
    def finish(self, exit_code: int = 0) -> None:
        """End the run (once the job's last stage is done); a no-op if it never started."""
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None


class StageLogger(Logger):
    """One stage's Lightning logger into the job's :class:`WandbRun`: keys prefixed ``<stage>/``,
    logged with ``<stage>/step``. Tables and images logged without a step take the step of the
    latest :meth:`log_metrics` call, so a callback's media line up with the validation's metrics.
    """

    def __init__(self, run: WandbRun, stage: str) -> None:
        super().__init__()
        self.run, self.stage = run, stage
        self.last_step: int | None = None  # of the latest log_metrics call
        self._defined = False

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def version(self) -> str:
        """The stage, so Lightning's per-logger directories differ between stages."""
        return self.stage

    @property
    def save_dir(self) -> str:
        return str(self.run.run_dir)

    @property
    @rank_zero_experiment
    def experiment(self) -> wandb.Run:
        return self.run.experiment

    def key(self, name: str) -> str:
        prefix = f"{self.stage}/"
        return name if name.startswith(prefix) else prefix + name

    def _log(self, row: dict[str, Any], step: int | None) -> None:
        run = self.experiment
        step_key = f"{self.stage}/step"
        if not self._defined:
            run.define_metric(step_key)
            run.define_metric(f"{self.stage}/*", step_metric=step_key)
            self._defined = True
        if step is not None:
            row[step_key] = int(step)
        run.log(row)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._log({self.key(k): v for k, v in metrics.items()}, step)
        self.last_step = self.last_step if step is None else int(step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: the job's config is the run's config from the start."""

    @rank_zero_only
    def log_table(
        self, key: str, columns: list[str], data: list[list[Any]], step: int | None = None
    ) -> None:
        import wandb

        table = wandb.Table(columns=list(columns), data=data)
        self._log({self.key(key): table}, self.last_step if step is None else step)

    @rank_zero_only
    def log_image(self, key: str, paths: list[str | Path], step: int | None = None) -> None:
        import wandb

        images = [wandb.Image(str(p)) for p in paths]
        self._log({self.key(key): images}, self.last_step if step is None else step)

    def finalize(self, status: str) -> None:
        """Leave the run open: later stages share it (:meth:`WandbRun.finish` ends it)."""
