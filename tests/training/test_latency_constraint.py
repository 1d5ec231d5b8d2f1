"""Pruning to a latency target: the constraint steers the structure, and the pipeline runs it."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.config import ConfigError, PruningConfig, load_config
from cofi_lightning.core.constraint import LatencyConstraint, ParamsConstraint
from cofi_lightning.core.lagrangian import (
    LagrangeMultipliers,
    TargetPath,
    multiplier_param_group,
)
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency import LatencyTable
from cofi_lightning.modeling import CoFiBertConfig
from cofi_lightning.run.model_card import refresh_card
from cofi_lightning.run.pipeline import summary_table, train

from tiny_bert import tiny_bert_kwargs


def _table(config, ffn_cost: float = 5.0) -> LatencyTable:
    """Synthetic: every FFN dimension costs ``ffn_cost`` times its parameter share."""
    hidden = [8, config.hidden_size]
    heads = list(range(config.num_attention_heads + 1))
    widths = [0, config.intermediate_size // 2, config.intermediate_size]
    per_head = 4 * config.hidden_size * config.attention_head_size  # attention params per head
    per_dim = 2 * config.hidden_size * ffn_cost  # FFN params per dimension, made dearer
    meta = {
        "num_layers": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_size": config.hidden_size,
        "device": "cpu",
        "device_name": "synthetic",
    }
    scale = [h / config.hidden_size for h in hidden]
    return LatencyTable(
        meta,
        hidden,
        heads,
        widths,
        [[s * per_head * n / 1e3 for n in heads] for s in scale],
        [[s * per_dim * w / 1e3 for w in widths] for s in scale],
        [0.01, 0.02],
        0.0,
    )


def _prune(constraint, config, steps: int = 300) -> CoFiMasks:
    """Masks and multipliers alone under ``constraint``; each unit's usefulness is proportional
    to its parameters, so the parameter constraint has no reason to prefer heads or FFN dims."""
    # Every gate starts at the same log-alpha (CoFi starts FFN dims nearer to closing).
    init = {"head": 3.0, "intermediate": 3.0}
    masks = CoFiMasks(config, units=["head", "intermediate"], init_log_alpha=init)
    multipliers = LagrangeMultipliers()
    opt = torch.optim.AdamW(
        [
            {"params": masks.mask_parameters(), "lr": 0.1, "weight_decay": 0.0},
            multiplier_param_group(multipliers, 0.1),
        ]
    )
    g = torch.Generator().manual_seed(0)
    weight = {
        "head": 4 * config.hidden_size * config.attention_head_size,
        "ffn": 2 * config.hidden_size,
    }
    path = TargetPath((constraint.target,), (steps // 2,))
    for step in range(steps):
        t = path(step)
        z = masks.sample(masks.noise(g))
        task = 1e-5 * (
            weight["head"] * (1 - z.head).sum() + weight["ffn"] * (1 - z.intermediate).sum()
        )
        value = constraint.expected(masks)
        multipliers.reset_windup_(float(value.detach()) - t, opt)
        (task + multipliers(value, t)).backward()
        opt.step()
        opt.zero_grad()
        masks.clamp_()
    return masks


def test_the_latency_constraint_prunes_the_expensive_units_harder():
    config = CoFiBertConfig.from_bert_config(
        BertConfig(**tiny_bert_kwargs(num_hidden_layers=2, intermediate_size=64)), num_labels=2
    )
    by_params = _prune(ParamsConstraint(0.5), config).deterministic()
    latency = LatencyConstraint(_table(config), target_speedup=2.0)
    by_latency_masks = _prune(latency, config)
    by_latency = by_latency_masks.deterministic()

    def kept(z, unit):
        return float((getattr(z, unit) != 0).float().mean())

    # FFN dims cost 5x their parameter share in latency: the latency run keeps fewer of them
    # (and more heads) than the parameter run at a similar reduction.
    assert kept(by_latency, "intermediate") < kept(by_params, "intermediate") - 0.1
    assert kept(by_latency, "head") > kept(by_params, "head")
    assert latency.real(by_latency_masks, by_latency) == pytest.approx(0.5, abs=0.06)


def test_bad_latency_settings_name_the_key():
    with pytest.raises(ConfigError, match="pruning.target_speedup must be > 1"):
        PruningConfig(constraint="latency", target_speedup=1.0)
    with pytest.raises(ConfigError, match="pruning.target_speedup"):
        PruningConfig(constraint="latency")
    with pytest.raises(ConfigError, match="pruning.constraint must be in"):
        PruningConfig(constraint="flops")


def _tiny_config(tiny_bert_dir) -> CoFiBertConfig:
    from transformers import AutoConfig

    return CoFiBertConfig.from_bert_config(AutoConfig.from_pretrained(tiny_bert_dir))


# pytest.warns re-emits the warnings it did not match outside their module filters: Lightning's
# LeafSpec deprecation (ignored in pyproject.toml) would show up here.
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_pipeline_prunes_to_a_speedup_and_reports_it(
    compose_train, tiny_overrides, tiny_bert_dir, tmp_path
):
    table_path = tmp_path / "table.json"
    _table(_tiny_config(tiny_bert_dir), ffn_cost=1.0).save(table_path)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir) + [
        "pruning.constraint=latency",
        "pruning.target_speedup=1.5",
        f"pruning.latency_table={table_path}",
        "pruning.epochs=1",
    ]
    cfg = compose_train(overrides)
    assert cfg.run_name.startswith("sst2_x1.5_full_seed57_")  # the speed target, no sparsity
    with pytest.warns(UserWarning, match="was profiled on synthetic, this machine is"):
        results = train(cfg)
    assert results["constraint"] == "latency"
    assert results["target_sparsity"] is None  # the config's sparsity target is not the target
    assert results["operating_points"][0]["target_sparsity"] is None
    latency = results["latency"]
    assert latency["target_speedup"] == 1.5 and latency["table_device"] == "synthetic"
    assert latency["table_speedup"] == pytest.approx(
        latency["unpruned_table_ms"] / latency["table_ms"]
    )
    summary = summary_table(results, run_dir)
    assert "(target speedup 1.5x)" in summary and "target sparsity" not in summary
    assert re.search(rf"\n  table speedup +{latency['table_speedup']:.2f}x \(", summary)
    card = (run_dir / "pruned_model" / "README.md").read_text()
    assert "cofi-sst2-x1.5" in card and "| target speedup (latency table of synthetic) |" in card
    assert refresh_card(run_dir)  # the card is rebuilt from results.json
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert meta["constraint"] == "latency"
    assert 0 <= results["sparsity"] < 1  # the parameter sparsity is still reported
    header = (run_dir / "prune" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "latency_reduction/expected" in header and "latency/table_ms" in header


def test_a_table_of_another_shape_or_a_corrupt_one_stops_the_run(
    compose_train, tiny_overrides, tiny_bert_dir, tmp_path
):
    other = _tiny_config(tiny_bert_dir)
    other.intermediate_size = 96
    wrong = tmp_path / "wrong.json"
    _table(other).save(wrong)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("[1, 2")
    for path, message in ((wrong, "was profiled for"), (corrupt, "not a latency table")):
        overrides = tiny_overrides(tmp_path / path.stem) + [
            "pruning.constraint=latency",
            "pruning.target_speedup=2",
            f"pruning.latency_table={path}",
            "stages=[teacher,prune]",
        ]
        with pytest.raises(ConfigError, match=f"pruning.latency_table .*{message}"):
            train(compose_train(overrides))


def test_a_missing_table_is_profiled_on_first_use(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir) + [
        "pruning.constraint=latency",
        "pruning.target_speedup=1.3",
        "stages=[teacher,prune]",
        "pruning.epochs=1",
    ]
    cfg = load_config(compose_train(overrides))
    assert cfg.pruning.latency_table is None
    train(compose_train(overrides))
    table = LatencyTable.load(run_dir / "prune" / "latency_table.json")
    assert table.meta["batch"] == 32 and table.meta["seq"] == 128


def test_each_constraint_names_the_metrics_it_logs():
    """The constraint, not the LightningModule, names its keys: ``<prefix>/expected`` and
    ``<prefix>/target`` with the multipliers at a step, the expected and real values at a
    validation; the parameter sparsity is logged under either constraint."""
    config = CoFiBertConfig.from_bert_config(
        BertConfig(**tiny_bert_kwargs(num_hidden_layers=2, intermediate_size=64)), num_labels=2
    )
    masks, multipliers = CoFiMasks(config), LagrangeMultipliers()
    z = masks.deterministic()
    params = ParamsConstraint(0.5)
    step = params.train_metrics(masks, params.expected(masks), 0.25, multipliers)
    assert set(step) == {
        "sparsity/expected",
        "sparsity/target",
        "sparsity/lambda_1",
        "sparsity/lambda_2",
    }
    assert step["sparsity/target"] == 0.25 and params.progress_key == "sparsity/expected"
    assert params.eval_metrics(masks, None) == {
        "sparsity/expected_at_eval": pytest.approx(float(masks.expected_sparsity().detach()))
    }
    assert params.eval_metrics(masks, z)["sparsity/deterministic"] == masks.sparsity(z)

    latency = LatencyConstraint(_table(config), target_speedup=2.0)
    step = latency.train_metrics(masks, latency.expected(masks), 0.1, multipliers, reset=True)
    assert latency.progress_key == "latency_reduction/expected"
    assert step["latency_reduction/target"] == 0.1 and step["sparsity/lambda_1_reset"] == 1.0
    assert float(step["sparsity/expected"]) == pytest.approx(
        float(masks.expected_sparsity().detach())
    )
    at_eval = latency.eval_metrics(masks, z)
    assert at_eval["latency_reduction/deterministic"] == pytest.approx(latency.real(masks, z))
    assert at_eval["latency/table_speedup"] == pytest.approx(
        at_eval["latency/unpruned_ms"] / at_eval["latency/table_ms"]
    )
    assert {"sparsity/deterministic", "latency_reduction/expected_at_eval"} <= set(at_eval)
    assert "latency/table_ms" not in latency.eval_metrics(masks, None)  # no structure yet
