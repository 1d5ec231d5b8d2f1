"""Post-training pruning's parts on a tiny random BERT: the search meets the constraint exactly as
the export counts it, the rearrangement lowers each layer's Fisher cost at the same counts, the
rescaling lowers each layer's error on held-out batches, and the whole is deterministic."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.core.constraint import LatencyConstraint
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.core.posttrain import posttrain_masks
from cofi_lightning.core.posttrain.importance import mask_gradients
from cofi_lightning.core.posttrain.rearrange import pruned_cost, rearrange
from cofi_lightning.core.posttrain.rescale import rescale
from cofi_lightning.core.posttrain.search import search
from cofi_lightning.latency import structure_latency
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

from tiny_bert import tiny_bert_kwargs


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = tiny_bert_kwargs(**{"num_hidden_layers": 3, "intermediate_size": 64, **overrides})
    return CoFiBertForSequenceClassification(
        CoFiBertConfig.from_bert_config(BertConfig(**kwargs), num_labels=2)
    ).eval()


def _batches(n=4, seed=0, size=16, seq=12):
    """Random sequences (some padded) labelled by the parity of their second token."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 99, (size, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[: size // 4, seq // 2 :] = 0
        out.append({"input_ids": ids * mask, "attention_mask": mask, "labels": ids[:, 1] % 2})
    return out


def _params_fits(gates, target):
    return lambda z: gates.sparsity(z) >= target


@pytest.mark.parametrize("target", [0.3, 0.6, 0.9])
def test_the_params_search_meets_the_target_as_the_export_counts_it(target):
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, _batches()).items()}
    z = search(fisher, _params_fits(gates, target))
    real = 1 - model.prune(z).num_encoder_params() / model.num_encoder_params()
    assert real == pytest.approx(gates.sparsity(z)) and real >= target
    assert real < target + 0.02  # as many units as the budget allows


def test_a_layer_without_heads_loses_its_attention_and_is_counted_so():
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {"head": torch.full((3, 4), 100.0), "intermediate": torch.ones(3, 64)}
    fisher["head"][1] = 0.0  # layer 1's heads matter least: the search drops them all first
    z = search(fisher, _params_fits(gates, 0.2))
    assert (z.head[1] == 0).all() and (z.head[[0, 2]] == 1).all()
    compact = model.prune(z)
    assert compact.config.num_heads[1] == 0
    full = model.num_encoder_params()
    assert gates.sparsity(z) == pytest.approx(1 - compact.num_encoder_params() / full)
    assert gates.remaining_params(z) == compact.num_encoder_params()


def test_the_latency_search_meets_the_tables_target():
    from test_preflight import _tiny_table

    model = _model(num_hidden_layers=2, intermediate_size=48)
    table = _tiny_table()
    constraint = LatencyConstraint(table, 2.0)
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, _batches()).items()}
    z = search(fisher, lambda m: constraint.real(gates, m) >= constraint.target)
    ms = structure_latency(table, gates.structure(z))
    assert ms <= table.full_ms() / 2
    assert ms > table.full_ms() / 2 - 1.0  # within a head's cost (1 ms) of the budget


def test_rearranging_keeps_each_layers_counts_and_lowers_its_fisher_cost():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(8, 3, 16, generator=g, dtype=torch.float64)
    grads[:, :, :4] += 2.0  # correlated units: independent ranking misjudges their sum
    mask = torch.ones(3, 16)
    order = grads.pow(2).sum(0).argsort(dim=1)
    mask.scatter_(1, order[:, :6], 0.0)  # the diagonal's choice: the 6 smallest
    out = rearrange(mask, grads)
    assert torch.equal(out.sum(1), mask.sum(1))
    before, after = pruned_cost(mask, grads), pruned_cost(out, grads)
    assert (after <= before + 1e-12).all() and (after < before).any()


def _layer_errors(model, masks, batches):
    """Per layer: the squared error of the masked model's output against the unmasked one's, on
    the real tokens; the last layer's on the first token (all the classifier reads of it)."""
    errors = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)
    with torch.no_grad():
        for b in batches:
            full = model(**b, output_hidden_states=True).hidden_states
            pruned = model(**b, masks=masks, output_hidden_states=True).hidden_states
            real, layers = b["attention_mask"].bool(), len(errors)
            first = torch.zeros_like(real)
            first[:, 0] = True
            for i, (f, p) in enumerate(zip(full[-layers:], pruned[-layers:], strict=True)):
                rows = first if i == layers - 1 else real
                errors[i] += (f - p)[rows].double().pow(2).sum()
    return errors


def test_rescaling_lowers_every_layers_error_on_held_out_batches():
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    calibration, held_out = _batches(6, seed=0), _batches(2, seed=1)
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, calibration).items()}
    z = search(fisher, _params_fits(gates, 0.5))
    tuned = rescale(model, z, calibration)
    assert torch.equal(tuned.head != 0, z.head != 0)  # the structure is unchanged
    assert not torch.equal(tuned.intermediate, z.intermediate)
    before, after = _layer_errors(model, z, held_out), _layer_errors(model, tuned, held_out)
    assert (after < before).all(), (before, after)


def test_rebatching_by_length_keeps_every_sequence_and_the_tuned_scales(monkeypatch):
    """The calibration batches are re-batched by length before the tuning: the same real token
    sequences in fewer padded slots, and the same scales as the batches in their given order."""
    module = importlib.import_module("cofi_lightning.core.posttrain.rescale")  # not the function

    batches = _batches(4, seed=0)
    for j, b in enumerate(batches):  # varied lengths, right-padded
        b["attention_mask"][:, 12 - 3 * j :] = 0
    rebatched = module.by_length(batches)

    def sequences(bs):
        return sorted(
            tuple(ids[m != 0].tolist())
            for b in bs
            for ids, m in zip(b["input_ids"], b["attention_mask"], strict=True)
        )

    assert [len(b["input_ids"]) for b in rebatched] == [len(b["input_ids"]) for b in batches]
    assert sequences(rebatched) == sequences(batches)
    slots = sum(b["attention_mask"].numel() for b in rebatched)
    assert slots < sum(b["attention_mask"].numel() for b in batches)
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, batches).items()}
    z = search(fisher, _params_fits(gates, 0.5))
    tuned = rescale(model, z, batches)
    monkeypatch.setattr(module, "by_length", list)
    as_given = rescale(model, z, batches)
    for unit, values in tuned.items():
        torch.testing.assert_close(values, getattr(as_given, unit), atol=1e-4, rtol=1e-4)


def _last_sum_error(model, masks, batches):
    """The squared error on the first tokens of the last layer's residual sum (the input of its
    output LayerNorm; the classifier reads that token only) against the unmasked model's."""
    sums = []
    norm = model.base_model.encoder_layers()[-1].output.LayerNorm
    hook = norm.register_forward_pre_hook(lambda m, a: sums.append(a[0][:, 0]))
    try:
        error = 0.0
        for b in batches:
            with torch.no_grad():
                model(**b)
            model(**b, masks=masks)
            error = error + (sums[-2].double() - sums[-1].double()).pow(2).sum()
    finally:
        hook.remove()
    return error


def test_the_last_ffns_scales_minimise_the_first_token_error_the_classifier_reads():
    """On the calibration batches the last FFN's scales are at the minimum of the first-token
    error (its gradient in them vanishes), not at a fit of every token's output."""
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    batches = _batches(6, seed=0)
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, batches).items()}
    z = search(fisher, _params_fits(gates, 0.5))
    tuned = rescale(model, z, batches)

    def gradient(masks):
        last = masks.intermediate[-1:].clone().requires_grad_(True)
        values = torch.cat([masks.intermediate[:-1], last])
        error = _last_sum_error(model, Masks(head=masks.head, intermediate=values), batches)
        (grad,) = torch.autograd.grad(error, last)
        return grad[0][masks.intermediate[-1] != 0].norm()

    assert gradient(tuned) < 1e-3 * gradient(z)


def test_auto_rescale_keeps_the_tuned_scales_only_when_they_lower_the_calibration_loss(
    monkeypatch,
):
    from cofi_lightning.core import posttrain

    model, batches = _model(), _batches(4)
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fits = [_params_fits(gates, t) for t in (0.3, 0.6)]
    untuned = posttrain_masks(model, batches, fits, rescaled="never")
    tuned = posttrain_masks(model, batches, fits, rescaled="always")
    auto = posttrain_masks(model, batches, fits, rescaled="auto")
    for u, t, a in zip(untuned, tuned, auto, strict=True):
        lower = posttrain.calibration_loss(model, t, batches) < posttrain.calibration_loss(
            model, u, batches
        )
        assert torch.equal(a.intermediate, (t if lower else u).intermediate)
    # the choice, on a loss that grows with the masks' sum: x3 is dropped, x0.5 kept
    monkeypatch.setattr(posttrain, "calibration_loss", lambda m, z, b: float(z.head.sum()))
    for factor, kept in ((3.0, False), (0.5, True)):
        scaled = lambda m, z, b, f=factor: Masks(**{k: f * v for k, v in z.items()})  # noqa: E731
        monkeypatch.setattr(posttrain, "rescale", scaled)
        for u, a in zip(untuned, posttrain_masks(model, batches, fits), strict=True):
            expected = (factor if kept else 1.0) * u.intermediate
            assert torch.equal(a.intermediate, expected)


def test_the_same_inputs_give_bitwise_identical_masks():
    model, batches = _model(num_hidden_layers=2), _batches(2, size=8)
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fits = [_params_fits(gates, 0.4), _params_fits(gates, 0.7)]
    first, second = posttrain_masks(model, batches, fits), posttrain_masks(model, batches, fits)
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, Masks)
        assert torch.equal(a.head, b.head) and torch.equal(a.intermediate, b.intermediate)
    assert gates.sparsity(first[1]) >= 0.7 > gates.sparsity(first[0]) >= 0.4


POSTTRAIN = [
    "pruning.method=posttrain",
    "pruning.posttrain.rescale=always",  # tuned scales to fold, whatever they do to the loss
    "pruning.posttrain.num_samples=20",  # 3 batches, the last one cut to 4 examples
    "pruning.posttrain.batch_size=8",
]


def _folded(run_dir, pretrained):
    """The model ``prune/best`` describes, folded: its weights pruned with its masks."""
    from cofi_lightning.training.callbacks import load_masks

    best = run_dir / "prune" / "best"
    model = CoFiBertForSequenceClassification.from_pretrained(pretrained, num_labels=2)
    model.load_state_dict(torch.load(best / "student.pt", weights_only=True))
    return model.prune(load_masks(best))


def test_pipeline_posttrain_without_finetune_exports_the_folded_masks(
    compose_train, tiny_overrides, tiny_bert_dir, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    from cofi_lightning.run.pipeline import train

    run_dir = tmp_path / "run"
    results = train(
        compose_train([*tiny_overrides(run_dir), *POSTTRAIN, "pruning.finetune.max_steps=0"])
    )
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert meta["method"] == results["method"] == "posttrain" and meta["reached_target"]
    assert meta["rescaled"]  # pruning.posttrain.rescale=always
    saved = torch.load(run_dir / "prune" / "best" / "student.pt", weights_only=True)
    teacher = CoFiBertForSequenceClassification.from_pretrained(run_dir / "teacher" / "model")
    for name, tensor in teacher.state_dict().items():  # the fine-tuned weights, unchanged
        assert torch.equal(saved[name], tensor), name
    masks = torch.load(run_dir / "prune" / "best" / "masks.pt", weights_only=True)
    assert set(masks) == {"head", "intermediate"}
    assert ((masks["intermediate"] != 0) & (masks["intermediate"] != 1)).any()  # tuned scales
    exported = AutoModelForSequenceClassification.from_pretrained(results["export_dir"])
    folded = _folded(run_dir, tiny_bert_dir).state_dict()
    assert exported.state_dict().keys() == folded.keys()
    for name, tensor in exported.state_dict().items():
        assert torch.equal(folded[name], tensor), name
    assert 0.3 <= results["sparsity"] == pytest.approx(meta["deterministic_sparsity"])
    assert not (run_dir / "prune" / "checkpoints").exists()  # nothing was trained


def test_pipeline_posttrain_with_a_short_finetune(
    compose_train, tiny_overrides, tmp_path, monkeypatch
):
    from cofi_lightning.run import pipeline
    from cofi_lightning.run.pipeline import train

    logged = []
    monkeypatch.setattr(pipeline, "rank_zero_info", logged.append)

    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), *POSTTRAIN, "pruning.finetune.max_steps=2"]
    results = train(compose_train(overrides))
    assert any(m.startswith("Post-training pruning run finished") for m in logged)  # not CoFi
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert results["method"] == "posttrain"
    assert results["sparsity"] == pytest.approx(meta["deterministic_sparsity"])
    done = json.loads((run_dir / "finetune" / "DONE.json").read_text())
    assert done["metrics"]  # the finetune stage trained and validated


def _refused(compose_train, overrides, run_dir, error, match):
    """``train`` raises ``error`` in one line matching ``match`` before any run directory."""
    from cofi_lightning.run.pipeline import train

    with pytest.raises(error, match=match) as caught:
        train(compose_train(overrides))
    assert "\n" not in str(caught.value)
    assert not run_dir.exists()


def test_posttrain_without_a_fine_tuned_model_is_refused_at_the_door(
    compose_train, tiny_overrides, tmp_path
):
    from cofi_lightning.config import ConfigError

    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), *POSTTRAIN, "distill.enabled=false"]
    match = "pruning.method=posttrain needs the fine-tuned teacher, but distill.enabled=false"
    _refused(compose_train, overrides, run_dir, ConfigError, match)


@pytest.mark.parametrize("method", ["posttrain", "uniform"])
def test_rounding_widths_without_gate_scores_is_refused_at_the_door(
    compose_train, tiny_overrides, tmp_path, method
):
    from cofi_lightning.config import ConfigError

    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), f"pruning.method={method}", "export.round_to=8"]
    match = f"export.round_to rounds widths by CoFi's gate scores, which pruning.method={method}"
    _refused(compose_train, overrides, run_dir, ConfigError, match)


@pytest.mark.parametrize("method", ["cofi", "posttrain"])
def test_a_teacher_of_another_shape_or_family_is_refused_naming_both_keys(
    compose_train, tiny_overrides, tiny_roberta_dir, minilm_dir, method, tmp_path
):
    from cofi_lightning.config import ConfigError
    from cofi_lightning.run.preflight import ModelSourceError

    from tiny_bert import save_tiny_bert

    wide = save_tiny_bert(tmp_path / "wide_ffn", minilm_dir, intermediate_size=64)
    run_dir = tmp_path / "run"
    key = "pruning.student_init=teacher" if method == "cofi" else "pruning.method=posttrain"
    base = [*tiny_overrides(run_dir), f"pruning.method={method}", "pruning.student_init=teacher"]
    match = rf"{key}: distill.teacher=.*wide_ffn and model.pretrained=.*"
    match += r"\(intermediate_size 64 vs 48\)"
    _refused(compose_train, [*base, f"distill.teacher={wide}"], run_dir, ConfigError, match)
    match = "distill.teacher is a RoBERTa model and model.pretrained a BERT one"
    teacher = f"distill.teacher={tiny_roberta_dir}"
    _refused(compose_train, [*base, teacher], run_dir, ModelSourceError, match)


def test_student_init_teacher_starts_the_prune_stage_from_the_teacher(
    compose_train, tiny_overrides, tiny_bert_dir, tmp_path, monkeypatch
):
    """The prune stage's student holds the fine-tuned teacher's weights, not the pretrained
    model's (here the teacher is a copy of it with another classifier)."""
    import shutil

    from cofi_lightning.run import stages
    from cofi_lightning.run.pipeline import train

    teacher_dir = tmp_path / "teacher"
    shutil.copytree(tiny_bert_dir, teacher_dir)
    teacher = CoFiBertForSequenceClassification.from_pretrained(teacher_dir)
    with torch.no_grad():
        teacher.classifier.weight.add_(1.0)
    teacher.save_pretrained(teacher_dir)

    class Started(Exception):
        pass

    def record(student, **kwargs):
        record.student = student
        raise Started

    monkeypatch.setattr(stages, "CoFiSystem", record)
    overrides = [
        *tiny_overrides(tmp_path / "run"),
        f"distill.teacher={teacher_dir}",
        "pruning.student_init=teacher",
    ]
    with pytest.raises(Started):
        train(compose_train(overrides))
    assert torch.equal(record.student.classifier.weight, teacher.classifier.weight)
