"""A validation pass's outputs, gathered across DDP ranks, as task metrics: ``val/<metric>``, or
``val/<eval name>/<metric>`` for tasks with several evaluation splits (MNLI).

Under DDP the sampler may repeat up to ``world_size - 1`` examples, which GLUE metrics count twice
(SQuAD answers are keyed by question id).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist

from cofi_lightning.data.tasks import TaskSpec
from cofi_lightning.training.metrics import glue_metrics, squad_metrics


def _gather(rows: list) -> list:
    """Every rank's rows, concatenated in rank order (no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    everything: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everything, rows)
    return [row for part in everything for row in part]


class ValidationCollector:
    """Accumulates ``(outputs, targets)`` per evaluation split during one validation pass."""

    def __init__(self, task: TaskSpec) -> None:
        self.task = task
        self.rows: dict[int, list[tuple[Any, ...]]] = defaultdict(list)

    def reset(self) -> None:
        self.rows = defaultdict(list)

    def add(self, split: int, logits: Any, batch: dict[str, torch.Tensor]) -> None:
        """Keep one batch: GLUE ``(logits [B, C], labels [B])``; SQuAD ``(start, end, index)``."""
        if self.task.family == "squad":
            start, end = logits
            row = (
                start.detach().float().cpu(),
                end.detach().float().cpu(),
                batch["feature_index"].cpu(),
            )
        else:
            row = (logits.detach().float().cpu(), batch["labels"].cpu())
        self.rows[split].append(row)

    def compute(self, trainer: Any = None) -> dict[str, float]:
        """``{"val/...": percent}`` of the collected pass ({} when nothing was seen); the
        ``trainer``'s datamodule post-processes SQuAD logits."""
        out: dict[str, float] = {}
        names = self.task.eval_names
        for split in sorted(self.rows):
            rows = _gather(self.rows[split])
            if not rows:
                continue
            if self.task.family == "squad":
                dm = trainer.datamodule
                preds = dm.postprocess(
                    [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
                )
                values = squad_metrics(preds, dm.references())
            else:
                logits = torch.cat([r[0] for r in rows])
                labels = torch.cat([r[1] for r in rows])
                values = glue_metrics(self.task.name, logits, labels)
            prefix = "val/" if len(names) == 1 else f"val/{names[split]}/"
            out.update({f"{prefix}{k}": float(v) for k, v in values.items()})
        return out
