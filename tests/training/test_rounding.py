"""Rounding pruned widths to multiples of k, by the gates' scores."""

from __future__ import annotations

import json

import torch

from cofi_lightning.core.masks import Masks
from cofi_lightning.core.rounding import round_widths


def _masks():
    g = torch.Generator().manual_seed(0)
    score = torch.rand(3, 40, generator=g)
    z = torch.zeros(3, 40)
    z[0, score[0].argsort(descending=True)[:13]] = 0.9  # 13 kept -> 16
    z[1, score[1].argsort(descending=True)[:19]] = 0.8  # 19 kept -> 16
    hidden_score = torch.rand(20, generator=g)
    hidden = (hidden_score > 0.3).float()
    masks = Masks(hidden=hidden, intermediate=z)  # layer 2: FFN removed
    return masks, Masks(hidden=hidden_score, intermediate=score)


def test_widths_move_to_the_nearest_multiple_by_score():
    masks, scores = _masks()
    out = round_widths(masks, scores, 8)
    kept = (out.intermediate != 0).sum(1).tolist()
    assert kept == [16, 16, 0]  # a removed sublayer stays removed
    before, after = masks.intermediate != 0, out.intermediate != 0
    assert (after[0] >= before[0]).all()  # rounding up keeps every kept unit
    added = after[0] & ~before[0]
    assert scores.intermediate[0][added].min() >= scores.intermediate[0][~after[0]].max()
    torch.testing.assert_close(out.intermediate[0][added], scores.intermediate[0][added])
    dropped = before[1] & ~after[1]  # rounding down drops the lowest-scored kept units
    assert scores.intermediate[1][dropped].max() <= scores.intermediate[1][after[1]].min()
    assert torch.equal(out.hidden, masks.hidden)  # hidden untouched unless asked
    assert int((round_widths(masks, scores, 8, hidden=True).hidden != 0).sum()) % 8 == 0
    assert round_widths(masks, scores, 1) is not None
    assert torch.equal(round_widths(masks, scores, 1).intermediate, masks.intermediate)


def test_pipeline_exports_rounded_widths(compose_train, tiny_overrides, tmp_path):
    from cofi_lightning.run.pipeline import train

    run_dir = tmp_path / "run"
    results = train(compose_train(tiny_overrides(run_dir) + ["export.round_to=8"]))
    widths = results["structure"]["intermediate_sizes"]
    assert all(w % 8 == 0 for w in widths), widths
    config = json.loads((run_dir / "pruned_model" / "config.json").read_text())
    assert config["intermediate_sizes"] == widths
