"""The operating points of a run: one per pruning target, each with its own directories.

This file owns the layout of a run's per-target outputs: one target has ``prune/best``,
``finetune/``, ``pruned_model/``, ``structure.png`` and ``speed_*.json``; a sparsity path
(``pruning.targets`` with several) suffixes each with ``_<t>`` (the target written with ``:g``).
The finetune and export stages run (and resume) once per point.
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
        target: The target sparsity (a latency-constrained run: the unused
            ``pruning.target_sparsity`` in the stages, None when read back from its results).
        suffix: ``""`` in the single-target layout, ``"_<t>"`` on a sparsity path.
    """

    target: float | None
    suffix: str = ""

    @property
    def label(self) -> str:
        return f"{self.target:g}"

    def stage(self, name: str) -> str:
        return f"{name}{self.suffix}" if name in PER_POINT_STAGES else name

    def best_dir(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / "prune" / f"best{self.suffix}"

    def export_dir(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / f"pruned_model{self.suffix}"

    def structure_plot(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / f"structure{self.suffix}.png"

    def speed_files(self, run_dir: str | Path) -> list[Path]:
        """The bench reports of this point's export (``python -m cofi_lightning.tools.bench``)."""
        return sorted(Path(run_dir).glob(f"speed_*{self.suffix}.json"))


def operating_points(targets: list[float | None]) -> list[OperatingPoint]:
    """The points of a run with these targets (``PruningConfig.target_list``)."""
    if len(targets) == 1:
        return [OperatingPoint(None if targets[0] is None else float(targets[0]))]
    return [OperatingPoint(float(t), f"_{float(t):g}") for t in targets]


def recorded_target(point: OperatingPoint, constraint: str) -> float | None:
    """The point's ``target_sparsity`` in what a run writes: None under ``constraint=latency``,
    whose target is ``pruning.target_speedup`` (recorded as ``latency.target_speedup``)."""
    return None if constraint == "latency" else point.target
