"""The operating points of a run: one per pruning target, each with its own directories.

This file owns the layout of a run's per-target outputs, for the stages, the results, the report
and the bench alike:

* one target (``pruning.target_sparsity``, or ``pruning.targets`` of one entry): the single-target
  layout, ``prune/best``, ``finetune/``, ``pruned_model/``, ``structure.png``, ``speed_*.json``;
* a sparsity path (``pruning.targets`` with several): every target t has ``prune/best_<t>``,
  ``finetune_<t>/``, ``pruned_model_<t>/``, ``structure_<t>.png`` and ``speed_*_<t>.json``, where
  ``<t>`` is the target written with ``:g`` (``0.6``, ``0.75``).

The finetune and export stages run once per point (``<stage><suffix>/DONE.json`` each, so each
resumes on its own); ``results.json`` lists the points in ``operating_points``
(``cofi_lightning.run.results``). A run under ``pruning.constraint=latency`` has one point whose
target is a speedup, not a sparsity: its records say ``target_sparsity: null``
(:func:`recorded_target`) and carry the speed target in ``latency``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The stages that run once per operating point (the others once per run).
PER_POINT_STAGES: tuple[str, ...] = ("finetune", "export")


@dataclass(frozen=True)
class OperatingPoint:
    """One target of a run and where its outputs live.

    Attributes:
        target: The target sparsity of this point (a latency-constrained run: the unused
            ``pruning.target_sparsity`` in the stages, None when read back from its results).
        suffix: ``""`` in the single-target layout, ``"_<t>"`` on a sparsity path.
    """

    target: float | None
    suffix: str = ""

    @property
    def label(self) -> str:
        """The target as written in paths and logs (``0.75``)."""
        return f"{self.target:g}"

    def stage(self, name: str) -> str:
        """The directory (and record) name of a per-point stage: ``finetune_0.6``."""
        return f"{name}{self.suffix}" if name in PER_POINT_STAGES else name

    def best_dir(self, run_dir: str | Path) -> Path:
        """The point's best structure (``prune/best`` or ``prune/best_<t>``)."""
        return Path(run_dir) / "prune" / f"best{self.suffix}"

    def export_dir(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / f"pruned_model{self.suffix}"

    def structure_plot(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / f"structure{self.suffix}.png"

    def speed_files(self, run_dir: str | Path) -> list[Path]:
        """The bench reports of this point's export (``python -m cofi_lightning.tools.bench``)."""
        return sorted(Path(run_dir).glob(f"speed_*{self.suffix}.json"))


def operating_points(targets: list[float | None]) -> list[OperatingPoint]:
    """The points of a run with these targets (``PruningConfig.target_list``; read back from a
    latency-constrained run's results, a single target is None)."""
    if len(targets) == 1:
        return [OperatingPoint(None if targets[0] is None else float(targets[0]))]
    return [OperatingPoint(float(t), f"_{float(t):g}") for t in targets]


def recorded_target(point: OperatingPoint, constraint: str) -> float | None:
    """The point's ``target_sparsity`` in what a run writes (``results.json``, the stages'
    records, the model card): its target, or None under ``constraint=latency``, whose target is
    ``pruning.target_speedup`` (recorded as ``latency.target_speedup``)."""
    return None if constraint == "latency" else point.target
