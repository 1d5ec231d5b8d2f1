"""Structure dashboards of the pruning stage: a per-layer table and a heatmap at every validation.

This file owns what the "sparsity curves" dashboards show beyond the scalar logs of the system:

* a per-layer table (``layer``, ``heads``, ``attention``, ``ffn_dims``, ``ffn``) of the
  deterministic masks, appended to ``<dirpath>/structure.csv`` and logged as a W&B table
  (``structure/table``);
* a heatmap (layers × {heads kept %, FFN dims kept %}) saved as
  ``<dirpath>/structure_step<step>.png`` and logged as a W&B image (``structure/heatmap``).

It reads masks from the system and never changes training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import matplotlib
import torch
from lightning.pytorch.loggers import WandbLogger

from cofi_lightning.masks import Masks

matplotlib.use("Agg")  # no display on clusters
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("step", "layer", "heads", "attention", "ffn_dims", "ffn", "hidden")


def structure_rows(masks: Masks, num_heads: int, ffn_size: int, hidden: int) -> list[dict]:
    """Per-layer kept units of deterministic masks (a sublayer is kept if its gate and a unit are).

    Args:
        masks: Deterministic masks (``head [L, N]``, ``intermediate [L, I]``, ...).
        num_heads, ffn_size, hidden: Unpruned sizes, used for units that are not masked.
    """
    L_ = next(t.shape[0] for u, t in masks.items() if u != "hidden") if masks.items() else 0
    ones = torch.ones(L_)
    head_layer = masks.head_layer if masks.head_layer is not None else ones
    mlp = masks.mlp if masks.mlp is not None else ones
    heads = (masks.head != 0).sum(1) if masks.head is not None else torch.full((L_,), num_heads)
    dims = (
        (masks.intermediate != 0).sum(1)
        if masks.intermediate is not None
        else torch.full((L_,), ffn_size)
    )
    kept_hidden = int((masks.hidden != 0).sum()) if masks.hidden is not None else hidden
    rows = []
    for i in range(L_):
        h = int(heads[i]) if head_layer[i] != 0 else 0
        f = int(dims[i]) if mlp[i] != 0 else 0
        rows.append(
            {
                "layer": i,
                "heads": h,
                "attention": h > 0,
                "ffn_dims": f,
                "ffn": f > 0,
                "hidden": kept_hidden,
            }
        )
    return rows


def heatmap(rows: list[dict], num_heads: int, ffn_size: int, title: str):
    """A matplotlib figure: kept fraction of heads and FFN dims per layer."""
    data = torch.tensor(
        [[r["heads"] / num_heads for r in rows], [r["ffn_dims"] / ffn_size for r in rows]]
    )  # [2, L]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 2.2))
    im = ax.imshow(data.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_yticks([0, 1], ["heads", "FFN dims"])
    ax.set_xticks(range(len(rows)), [str(r["layer"] + 1) for r in rows])
    ax.set_xlabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="kept")
    fig.tight_layout()
    return fig


class StructureLogger(L.Callback):
    """Write the structure table and heatmap of the deterministic masks after each validation.

    Args:
        dirpath: Where ``structure.csv`` and the PNG heatmaps go.
        heatmap_every_n_evals: Draw a heatmap every n-th validation (tables are cheap: always).
    """

    def __init__(self, dirpath: str | Path, heatmap_every_n_evals: int = 1) -> None:
        self.dirpath = Path(dirpath)
        self.every = max(1, int(heatmap_every_n_evals))
        self.evals = 0

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        masks = module.eval_masks() if module.masks is not None else None
        if masks is None:
            return
        cfg, step = module.masks, trainer.global_step
        rows = structure_rows(masks, cfg.num_heads, cfg.intermediate_size, cfg.hidden_size)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        table = self.dirpath / "structure.csv"
        new = not table.exists()
        with table.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows({"step": step, **r} for r in rows)
        wandb = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for lg in wandb:
            lg.log_table(
                "structure/table",
                columns=list(COLUMNS),
                data=[[step, *r.values()] for r in rows],
                step=step,
            )
        self.evals += 1
        if (self.evals - 1) % self.every:
            return
        sparsity = module.last_val_metrics.get("sparsity/deterministic", float("nan"))
        fig = heatmap(
            rows, cfg.num_heads, cfg.intermediate_size, f"step {step}: sparsity {sparsity:.3f}"
        )
        path = self.dirpath / f"structure_step{step:07d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        for lg in wandb:
            lg.log_image("structure/heatmap", [str(path)], step=step)
