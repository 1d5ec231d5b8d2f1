"""Structure dashboards of the pruning stage: at every validation, a per-layer table of the
deterministic masks (``<dirpath>/structure.csv``, ``structure/table``) and a heatmap
(``<dirpath>/structure_step<step>.png``, ``structure/heatmap``)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import matplotlib

from cofi_lightning.modeling.structure import Structure
from cofi_lightning.training.tracking import MediaLogger

matplotlib.use("Agg")  # no display on clusters
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("step", "layer", "heads", "attention", "ffn_dims", "ffn", "hidden")


def heatmap(structure: Structure, full: Structure, title: str, target: float | None = None):
    """A matplotlib figure of the kept heads, FFN dims and hidden dims per layer (colour: kept
    fraction of ``full``, text: kept count), titled with the ``target`` sparsity if known."""
    n = len(structure.num_heads)
    heads, dims, hidden = structure.num_heads, structure.intermediate_sizes, structure.hidden_size
    most_heads, most_dims = max(full.num_heads), max(full.intermediate_sizes)
    data = [
        [h / most_heads for h in heads],
        [f / most_dims for f in dims],
        [hidden / full.hidden_size] * n,  # one shared mask: a uniform row
    ]
    labels = [
        f"heads (of {most_heads})",
        f"FFN dims (of {most_dims})",
        f"hidden (of {full.hidden_size})",
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * n + 2.5), 0.7 * len(data) + 1.3))
    im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")

    def text(x: float, y: int, value: str, fraction: float) -> None:
        colour = "white" if fraction < 0.6 else "black"  # dark end of viridis: white text
        ax.text(x, y, value, ha="center", va="center", color=colour, fontsize=8)

    for i in range(n):
        text(i, 0, str(heads[i]), data[0][i])
        text(i, 1, str(dims[i]), data[1][i])
    text((n - 1) / 2, 2, f"{hidden}/{full.hidden_size}", data[2][0])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
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
    """Write the structure table and heatmap of the deterministic masks after each validation
    (a heatmap every ``heatmap_every_n_evals``-th), and log them to the
    :class:`~cofi_lightning.training.tracking.MediaLogger` loggers with no explicit step, so they
    line up with the validation's metrics."""

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
        step, structure = trainer.global_step, module.masks.structure(masks)
        rows = structure.rows()
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
        save_heatmap(path, structure, module.masks.full, title, self.target)
        for lg in media:
            lg.log_image("structure/heatmap", [str(path)])
