"""Structure dashboards of the pruning stage: a per-layer table and a heatmap at every validation.

This file owns what the "sparsity curves" dashboards show beyond the scalar logs of the system:

* a per-layer table (``step``, ``layer``, ``heads``, ``attention``, ``ffn_dims``, ``ffn``,
  ``hidden``) of the deterministic masks, appended to ``<dirpath>/structure.csv`` and logged as
  a W&B table (``structure/table``; ``prune/structure/table`` through the stage logger);
* a heatmap (layers × {heads, FFN dims} kept, counts in the cells, plus the shared hidden dims)
  saved as ``<dirpath>/structure_step<step>.png`` and logged as a W&B image
  (``structure/heatmap``).

It reads masks from the system and never changes training; the W&B run belongs to
``cofi_lightning.training.tracking``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import matplotlib
import torch

from cofi_lightning.core.masks import Masks
from cofi_lightning.training.tracking import MediaLogger

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


def heatmap(
    rows: list[dict],
    num_heads: int,
    ffn_size: int,
    title: str,
    hidden_size: int | None = None,
    target: float | None = None,
):
    """A matplotlib figure of the kept structure per layer, with the kept counts in the cells.

    Rows are heads and FFN dims (colour: kept fraction, text: kept count) and, given
    ``hidden_size``, the hidden dims shared by all layers (one cell: ``kept/full``).

    Args:
        rows: :func:`structure_rows` output.
        num_heads, ffn_size: Unpruned heads and FFN dims per layer (the colour scale's 1.0).
        title: Figure title; `` (target <target>)`` is appended when ``target`` is given.
        hidden_size: Unpruned hidden size; ``None`` leaves out the hidden row.
        target: Target sparsity (a fraction), or ``None`` if unknown.
    """
    n = len(rows)
    heads, dims = [r["heads"] for r in rows], [r["ffn_dims"] for r in rows]
    data = [[h / num_heads for h in heads], [f / ffn_size for f in dims]]
    labels = [f"heads (of {num_heads})", f"FFN dims (of {ffn_size})"]
    if hidden_size is not None and rows:
        data.append([rows[0]["hidden"] / hidden_size] * n)  # one shared mask: a uniform row
        labels.append(f"hidden (of {hidden_size})")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * n + 2.5), 0.7 * len(data) + 1.3))
    im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")

    def text(x: float, y: int, value: str, fraction: float) -> None:
        colour = "white" if fraction < 0.6 else "black"  # dark end of viridis: white text
        ax.text(x, y, value, ha="center", va="center", color=colour, fontsize=8)

    for i in range(n):
        text(i, 0, str(heads[i]), data[0][i])
        text(i, 1, str(dims[i]), data[1][i])
    if len(data) == 3:
        text((n - 1) / 2, 2, f"{rows[0]['hidden']}/{hidden_size}", data[2][0])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(n), [str(r["layer"] + 1) for r in rows])
    ax.set_xlabel("layer")
    ax.set_title(title if target is None else f"{title} (target {target:.2f})")
    fig.colorbar(im, ax=ax, label="kept fraction")
    fig.tight_layout()
    return fig


def save_heatmap(path: str | Path, *args, **kwargs) -> None:
    """:func:`heatmap` (same arguments after ``path``) written as a PNG at 120 dpi."""
    fig = heatmap(*args, **kwargs)
    fig.savefig(path, dpi=120)
    plt.close(fig)


class StructureLogger(L.Callback):
    """Write the structure table and heatmap of the deterministic masks after each validation.

    Loggers with ``log_table`` / ``log_image``
    (:class:`~cofi_lightning.training.tracking.MediaLogger`) also get them, with no explicit step: a
    :class:`~cofi_lightning.training.tracking.StageLogger` then logs them at the step of the
    validation metrics Lightning just logged (Lightning's logging step, which is ``global_step - 1``
    while fitting). ``structure.csv`` and the PNG names keep ``trainer.global_step``.

    Args:
        dirpath: Where ``structure.csv`` and the PNG heatmaps go.
        heatmap_every_n_evals: Draw a heatmap every n-th validation (tables are cheap: always).
        target: Target sparsity shown in the heatmap titles; ``None`` if unknown.
    """

    def __init__(
        self, dirpath: str | Path, heatmap_every_n_evals: int = 1, target: float | None = None
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every = max(1, int(heatmap_every_n_evals))
        self.target = target
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
        media = [lg for lg in trainer.loggers if isinstance(lg, MediaLogger)]
        for lg in media:
            data = [[step, *(r[c] for c in COLUMNS[1:])] for r in rows]
            lg.log_table("structure/table", columns=list(COLUMNS), data=data)
        self.evals += 1
        if (self.evals - 1) % self.every:
            return
        sparsity = module.last_val_metrics.get("sparsity/deterministic", float("nan"))
        title = f"step {step}: sparsity {sparsity:.3f}"
        path = self.dirpath / f"structure_step{step:07d}.png"
        save_heatmap(
            path, rows, cfg.num_heads, cfg.intermediate_size, title, cfg.hidden_size, self.target
        )
        for lg in media:
            lg.log_image("structure/heatmap", [str(path)])
