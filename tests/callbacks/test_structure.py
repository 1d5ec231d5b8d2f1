"""The structure heatmap: kept counts in the cells, the hidden row, the target in the title."""

from __future__ import annotations

import matplotlib.pyplot as plt

from cofi_lightning.modeling.structure import Structure
from cofi_lightning.training.callbacks import heatmap

KEPT = Structure(hidden_size=24, num_heads=(3, 0), intermediate_sizes=(40, 7))
FULL = Structure(hidden_size=32, num_heads=(4, 4), intermediate_sizes=(48, 48))


def test_heatmap_shows_counts_hidden_row_and_target():
    fig = heatmap(KEPT, FULL, "step 2: sparsity 0.412", target=0.6)
    (ax, _colorbar) = fig.axes
    assert ax.get_title() == "step 2: sparsity 0.412 (target 0.60)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "heads (of 4)",
        "FFN dims (of 48)",
        "hidden (of 32)",
    ]
    cells = {(round(t.get_position()[0], 2), t.get_position()[1]): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): "3", (1, 0): "0", (0, 1): "40", (1, 1): "7", (0.5, 2): "24/32"}
    assert ax.images[0].get_array().tolist() == [[0.75, 0.0], [40 / 48, 7 / 48], [0.75, 0.75]]
    plt.close(fig)


def test_heatmap_without_target_keeps_the_title():
    fig = heatmap(KEPT, FULL, "step 2")
    (ax, _colorbar) = fig.axes
    assert ax.get_title() == "step 2"
    assert len(ax.get_yticklabels()) == 3 and len(ax.texts) == 5
    plt.close(fig)
