"""The Structure value: from masks or a config, read back from results.json, counted exactly."""

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.modeling.structure import Structure, sublayer_alive, unit_counts

from tiny_bert import tiny_bert_kwargs

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


@pytest.fixture
def cfg():
    return CoFiBertConfig(**tiny_bert_kwargs(), num_labels=2)


def removed_sublayers(cfg) -> Masks:
    """Layer 0: attention removed by its heads (all zero under an open gate), FFN kept; layer 1:
    attention kept, FFN removed by its gate (units open); soft values and some hidden dims zero."""
    L, N, M, H = (
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.hidden_size,
    )
    head = torch.full((L, N), 0.7)
    head[0] = 0.0
    head[1, :2] = 0.0
    intermediate = torch.full((L, M), 0.9)
    intermediate[0, :5] = 0.0
    mlp = torch.ones(L)
    mlp[1] = 0.0
    hidden = torch.ones(H)
    hidden[::4] = 0.0
    return Masks(
        hidden=hidden, head=head, head_layer=torch.ones(L), intermediate=intermediate, mlp=mlp
    )


def test_from_masks_removes_dead_sublayers_and_matches_the_export(cfg):
    model = CoFiBertForSequenceClassification(cfg)
    z = removed_sublayers(cfg)
    full = Structure.from_config(cfg)
    structure = Structure.from_masks(z, full)
    N, M = cfg.num_attention_heads, cfg.intermediate_size
    assert structure.hidden_size == cfg.hidden_size - len(range(0, cfg.hidden_size, 4))
    assert structure.num_heads[:2] == (0, N - 2)
    assert structure.intermediate_sizes[:2] == (M - 5, 0)  # the gate removes all its open units
    rows = structure.rows()
    assert [(r["attention"], r["ffn"]) for r in rows[:2]] == [(False, True), (True, False)]
    small = model.prune(z)
    assert Structure.from_config(small.config) == structure  # the export has these sizes
    masks = CoFiMasks(cfg)
    real = sum(p.numel() for p in small.bert.encoder.parameters())
    assert structure.params(masks.head_size) == masks.remaining_params(z) == real
    assert full.params(masks.head_size) == masks.full_params == model.num_encoder_params()


def test_from_config_reads_pruned_and_vanilla_configs(cfg):
    pruned = CoFiBertConfig.from_pretrained_config(
        cfg, hidden_size=30, num_heads=[0, 3], intermediate_sizes=[7, 0]
    )
    assert Structure.from_config(pruned) == Structure(30, (0, 3), (7, 0))
    L = cfg.num_hidden_layers
    plain = BertConfig(**tiny_bert_kwargs())
    assert Structure.from_config(plain) == Structure(
        plain.hidden_size, (plain.num_attention_heads,) * L, (plain.intermediate_size,) * L
    )


def test_results_json_form_round_trips_and_reads_every_committed_record():
    structure = Structure(30, (0, 3), (7, 0))
    record = json.loads(json.dumps(structure.as_dict()))
    assert record == {"hidden_size": 30, "num_heads": [0, 3], "intermediate_sizes": [7, 0]}
    assert Structure.from_dict(record) == structure
    assert str(structure) == "hidden 30; heads [0, 3]; FFN [7, 0]"
    found = 0
    for path in sorted(RESULTS.rglob("results.json")):
        results = json.loads(path.read_text())
        for point in [results, *results.get("operating_points", [])]:
            if "structure" in point:
                assert Structure.from_dict(point["structure"]).as_dict() == point["structure"]
                found += 1
    assert found > 50


def test_kept_units_expected_counts_and_alive_probability(cfg):
    """Probabilities give expected counts; 0/1 values the exact counts of Structure.from_masks."""
    full = Structure.from_config(cfg)
    p = Masks(head=torch.full((2, 4), 0.5), head_layer=torch.tensor([1.0, 0.5]))
    kept = unit_counts(p, Structure(full.hidden_size, (4, 4), (8, 8)))
    torch.testing.assert_close(kept.heads, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(kept.attention, torch.tensor([1 - 0.5**4, 0.5 * (1 - 0.5**4)]))
    torch.testing.assert_close(kept.widths, torch.tensor([8.0, 8.0]))
    assert kept.ffn.tolist() == [1.0, 1.0] and float(kept.hidden) == full.hidden_size
    assert sublayer_alive(torch.tensor([True, False]), None).tolist() == [True, False]


def test_a_pruned_model_prunes_again_with_a_hidden_mask_only(cfg):
    """Layers of different widths keep all their units when only hidden dims are masked (the
    default units were once the first layer's, so a narrower later layer failed to index)."""
    sizes = {"num_heads": [2, 4], "intermediate_sizes": [48, 20]}
    model = CoFiBertForSequenceClassification(CoFiBertConfig(**tiny_bert_kwargs(), **sizes)).eval()
    hidden = torch.ones(cfg.hidden_size)
    hidden[:3] = 0.0
    z = Masks(hidden=hidden)
    small = model.prune(z).eval()
    assert Structure.from_config(small.config) == Structure(29, (2, 4), (48, 20))
    assert Structure.from_masks(z, Structure.from_config(model.config)) == Structure(
        29, (2, 4), (48, 20)
    )
    ids = torch.randint(1, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(small(input_ids=ids).logits, model(input_ids=ids, masks=z).logits)
