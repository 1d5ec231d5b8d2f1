"""Latency tables: profiling, files, interpolation, and the gates' expected latency."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency import (
    LatencyTable,
    LatencyTableError,
    expected_latency,
    structure_latency,
)
from cofi_lightning.latency.__main__ import main
from cofi_lightning.latency.profile import width_grid
from cofi_lightning.modeling import CoFiBertConfig

from tiny_bert import tiny_bert_kwargs


def _config(**overrides) -> CoFiBertConfig:
    kwargs = tiny_bert_kwargs(num_hidden_layers=3, intermediate_size=64, **overrides)
    return CoFiBertConfig.from_bert_config(BertConfig(**kwargs), num_labels=2)


def _linear_table(config, attention_per_head=1.0, ffn_per_dim=0.1) -> LatencyTable:
    """A synthetic table: latency linear in heads, FFN width and hidden size."""
    hidden = [8, 16, 32]
    heads = list(range(config.num_attention_heads + 1))
    widths = [0, 8, 16, 32, 64]
    scale = [h / 32 for h in hidden]
    meta = {"num_layers": config.num_hidden_layers, "device": "cpu", "dtype": "fp32"}
    return LatencyTable(
        meta,
        hidden,
        heads,
        widths,
        [[s * attention_per_head * n for n in heads] for s in scale],
        [[s * ffn_per_dim * w for w in widths] for s in scale],
        [0.5 * s for s in scale],
        0.0,
    )


def test_profile_writes_a_table_over_the_whole_grid(tmp_path, capsys):
    config = _config()
    config.save_pretrained(tmp_path / "model")
    out = tmp_path / "table.json"
    main(
        [
            "profile",
            "--model",
            str(tmp_path / "model"),
            "--batch",
            "2",
            "--seq",
            "8",
            "--rounds",
            "3",
            "--warmup",
            "1",  # a first, cold call of the empty layer can cost as much as a full one
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert "unpruned" in capsys.readouterr().out
    table = LatencyTable.load(out)
    assert table.heads == [0, 1, 2, 3, 4] and table.widths == width_grid(64)
    assert table.hidden_sizes == [8, 16, 24, 32]
    assert table.meta["batch"] == 2 and table.meta["seq"] == 8 and table.meta["threads"] == 1
    assert {"device_name", "torch", "dtype"} <= set(table.meta)
    assert all(ms >= 0 for row in table.attention + table.ffn for ms in row)
    assert table.attention[-1][-1] > table.removed  # a full sublayer costs more than nothing
    # calibrated on the whole unpruned model, timed too
    assert table.full_ms() == pytest.approx(table.meta["full_model_ms"])
    assert table.calibration == pytest.approx(table.meta["full_model_ms"] / table.parts_ms())


def test_width_grid_is_dense_near_zero_and_ends_at_the_full_width():
    grid = width_grid(3072)
    assert grid[:6] == [0, 1, 2, 4, 8, 12] and grid[-1] == 3072
    assert {64, 96, 128, 768, 1536, 2048} <= set(grid)


def test_a_corrupt_or_foreign_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LatencyTableError, match="not a latency table"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(LatencyTableError, match="table version 99"):
        LatencyTable.load(bad)
    with pytest.raises(LatencyTableError, match="no such|not a latency table"):
        LatencyTable.load(tmp_path / "missing.json")


@pytest.mark.parametrize("model", ["missing", "no config"])
def test_profile_of_a_missing_model_directory_says_so(tmp_path, model):
    """Not "Repo id must use alphanumeric chars" about a path that is not there."""
    path = tmp_path / "missing"
    if model == "no config":
        path = tmp_path
    with pytest.raises(SystemExit) as err:
        main(["profile", "--model", str(path), "--out", str(tmp_path / "t.json")])
    message = str(err.value.code)
    assert "\n" not in message and "Repo id" not in message
    expected = f"no directory {path}" if model == "missing" else "a directory without config.json"
    assert message.startswith(f"error: --model={path} ") and expected in message


def test_max_speedup_is_bounded_by_the_fixed_cost():
    """Every layer removed leaves the fixed cost: 0.5 ms at full hidden (32), 0.125 ms at 8."""
    from cofi_lightning.latency import max_speedup

    table = _linear_table(_config())  # 3 layers of 4 heads (4 ms) + 64 FFN dims (6.4 ms)
    full = 0.5 + 3 * (4.0 + 6.4)
    assert table.full_ms() == pytest.approx(full)
    assert max_speedup(table) == pytest.approx(full / 0.125)
    assert max_speedup(table, prune_hidden=False) == pytest.approx(full / 0.5)
    table.calibration = 1.1  # scales both sides
    assert max_speedup(table, prune_hidden=False) == pytest.approx(full / 0.5)


def test_interpolation_is_exact_on_the_grid_linear_between_and_differentiable():
    table = _linear_table(_config())
    heads = torch.tensor([0.0, 1.0, 2.5, 4.0], dtype=torch.float64, requires_grad=True)
    ms = table.attention_ms(heads, torch.tensor(32.0))
    torch.testing.assert_close(ms, heads.detach())  # 1 ms per head at full hidden size
    ms.sum().backward()
    torch.testing.assert_close(heads.grad, torch.ones(4, dtype=torch.float64))
    half = table.ffn_ms(torch.tensor([32.0], dtype=torch.float64), torch.tensor(24.0))
    assert float(half) == pytest.approx(0.1 * 32 * 0.75)  # between hidden 16 and 32


def test_structure_latency_sums_the_table_over_layers():
    config = _config()
    masks = CoFiMasks(config)
    table = _linear_table(config)
    with torch.no_grad():
        for gate in masks.gates.values():
            gate.log_alpha.fill_(10.0)  # every unit kept
    z = masks.deterministic()
    full = structure_latency(table, masks.structure(z))
    assert full == pytest.approx(0.5 + 3 * (4 * 1.0 + 64 * 0.1))
    z.head[1] = 0  # layer 1's attention removed
    z.intermediate[2, :32] = 0
    assert structure_latency(table, masks.structure(z)) == pytest.approx(full - 4.0 - 3.2)


def test_expected_latency_is_close_to_the_monte_carlo_mean_and_steers_the_gates():
    """ℓ̂ (the latency at the expected structure) against the mean table latency of sampled
    structures, with gates spread over open, closed and undecided."""
    config = _config()
    masks = CoFiMasks(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for gate in masks.gates.values():
            gate.log_alpha.copy_(torch.empty_like(gate.log_alpha).uniform_(-3, 4, generator=g))
    table = _linear_table(config)
    estimate = expected_latency(masks, table)
    samples = [
        structure_latency(table, masks.structure(masks.sample(masks.noise(g)))) for _ in range(2000)
    ]
    mc = sum(samples) / len(samples)
    assert abs(float(estimate.detach()) - mc) / mc < 0.05
    estimate.backward()
    head = masks.gates["head"].log_alpha
    assert (head.grad > 0).all()  # opening a head makes the model slower
