"""The teacher cache serves what the live teacher computes, is keyed so it is never stale, and
fails clearly when it cannot be built."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig

from cofi_lightning.config import ConfigError, DistillConfig, PruningConfig
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.data.base import IndexedDataset, PadCollator
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.run.teacher_cache import TeacherCache, open_or_build
from cofi_lightning.training.lit_module import CoFiSystem

from tiny_bert import tiny_bert_kwargs

LAYERS = 4  # the default distilled layers of a 4-layer teacher are [0, 3]


def _model(seed: int) -> CoFiBertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(**tiny_bert_kwargs(num_hidden_layers=LAYERS))
    return CoFiBertForSequenceClassification(CoFiBertConfig.from_bert_config(config, num_labels=2))


def _dataset(n: int = 24) -> Dataset:
    g = torch.Generator().manual_seed(0)
    rows = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "labels": []}
    for _ in range(n):
        length = int(torch.randint(3, 14, (), generator=g))
        rows["input_ids"].append([2] + torch.randint(5, 99, (length - 1,), generator=g).tolist())
        rows["attention_mask"].append([1] * length)
        rows["token_type_ids"].append([0] * length)
        rows["labels"].append(int(torch.randint(0, 2, (), generator=g)))
    return Dataset.from_dict(rows)


def _batch(ds: Dataset, indices: list[int]) -> dict[str, torch.Tensor]:
    return PadCollator(pad_token_id=0)(IndexedDataset(ds).__getitems__(indices))


def _system(teacher, student, *, pruning: bool) -> CoFiSystem:
    kwargs = {}
    if pruning:
        stage = PruningConfig(target_sparsity=0.5, pre_pruning_steps=0, lagrangian_warmup_steps=0)
        kwargs = dict(
            stage=stage,
            masks=CoFiMasks(student.config),
        )
    else:
        kwargs = dict(stage=PruningConfig().finetune)
    return CoFiSystem(
        student, task="sst2", teacher=teacher, distill=DistillConfig(), seed=3, **kwargs
    )


def _build(teacher, ds, root, batch_size=5, features_key="features-v1") -> TeacherCache:
    return open_or_build(
        teacher,
        ds,
        features_key=features_key,
        layers=[0, 3],
        root=root,
        pad_token_id=0,
        batch_size=batch_size,
        progress=False,
    )


@pytest.mark.parametrize("pruning", [True, False], ids=["prune", "finetune"])
def test_cached_losses_equal_the_live_teacher_to_fp16_tolerance(tmp_path, pruning):
    teacher, ds = _model(1), _dataset()
    cache = _build(teacher, ds, tmp_path)
    batch = _batch(ds, [7, 0, 19, 3, 11, 22])  # mixed lengths: padding in the batch
    losses = {}
    for name in ("live", "cached"):
        system = _system(teacher, _model(2), pruning=pruning)
        system.teacher_cache = cache if name == "cached" else None
        logged: dict[str, torch.Tensor] = {}

        def log(key, value, _logged=logged, **_):
            _logged[key] = torch.as_tensor(value).clone()

        system.log = log
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = system.training_step(batch, 0)
        losses[name] = (loss.detach(), logged)
    (live, live_logs), (cached, cached_logs) = losses["live"], losses["cached"]
    for key in ("train/pred_loss", "train/layer_loss"):
        torch.testing.assert_close(cached_logs[key], live_logs[key], rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(cached, live, rtol=2e-3, atol=1e-4)
    assert not torch.equal(cached_logs["train/layer_loss"], torch.zeros(()))


def test_cached_outputs_match_a_teacher_forward_on_real_tokens(tmp_path):
    teacher, ds = _model(1), _dataset()
    cache = _build(teacher, ds, tmp_path)
    batch = _batch(ds, list(range(10)))
    got = cache.batch(batch["example_index"], batch["input_ids"].shape[1], torch.device("cpu"))
    with torch.no_grad():
        out = teacher(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            output_hidden_states=True,
        )
    torch.testing.assert_close(got.logits, out.logits, rtol=1e-3, atol=1e-3)
    real = batch["attention_mask"].bool()
    for slot, layer in enumerate([0, 3]):
        want = out.hidden_states[layer + 1][real]
        torch.testing.assert_close(got.hidden[slot][real], want, rtol=1e-3, atol=2e-3)
        assert torch.all(got.hidden[slot][~real] == 0)


def test_a_changed_teacher_or_dataset_gets_a_new_entry(tmp_path):
    teacher, ds = _model(1), _dataset()
    first = _build(teacher, ds, tmp_path)
    again = _build(teacher, ds, tmp_path)
    assert again.path == first.path  # reused, not rebuilt
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)  # the same architecture, other weights
    changed = _build(teacher, ds, tmp_path)
    assert changed.path != first.path
    batch = _batch(ds, [0, 1])
    seq = batch["input_ids"].shape[1]
    shift = (
        changed.batch(batch["example_index"], seq, torch.device("cpu")).logits
        - first.batch(batch["example_index"], seq, torch.device("cpu")).logits
    )
    torch.testing.assert_close(shift, torch.ones_like(shift), rtol=0, atol=2e-2)
    other_data = _build(teacher, ds, tmp_path, features_key="features-v2")
    assert other_data.path not in (first.path, changed.path)


def test_an_interrupted_build_leaves_no_entry(tmp_path, monkeypatch):
    teacher, ds = _model(1), _dataset()
    calls = {"n": 0}
    forward = teacher.forward

    def dying_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(teacher, "forward", dying_forward)
    with pytest.raises(KeyboardInterrupt):
        _build(teacher, ds, tmp_path)
    assert not any((p / "meta.json").is_file() for p in tmp_path.iterdir())
    monkeypatch.setattr(teacher, "forward", forward)
    assert len(_build(teacher, ds, tmp_path)) == len(ds)


def test_a_cache_larger_than_the_free_disk_is_refused_naming_the_key(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        "cofi_lightning.run.teacher_cache.shutil.disk_usage",
        lambda _: usage._replace(free=1000),
    )
    with pytest.raises(ConfigError, match="distill.teacher_cache needs .* free"):
        _build(_model(1), _dataset(), tmp_path)


def test_the_cache_needs_the_real_token_layer_loss():
    with pytest.raises(ConfigError, match="distill.teacher_cache needs distill.layer_loss_tokens"):
        DistillConfig(teacher_cache=True, layer_loss_tokens="all")
    assert DistillConfig(teacher_cache=False, layer_loss_tokens="all").layer_loss_tokens == "all"


def test_a_job_waits_for_the_one_building_the_cache_and_reuses_it(tmp_path, monkeypatch):
    """Two jobs of a sweep: the second blocks on the build lock, then reads the first's entry."""
    import fcntl
    import threading

    from cofi_lightning.run import teacher_cache

    teacher, ds = _model(1), _dataset()
    key = teacher_cache.cache_key(teacher, "features-v1", [0, 3])
    builds = []
    real_build = teacher_cache._build
    monkeypatch.setattr(
        teacher_cache, "_build", lambda *a, **k: builds.append(1) or real_build(*a, **k)
    )
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / f"{key}.lock", "w") as lock:  # the first job is building
        fcntl.flock(lock, fcntl.LOCK_EX)
        got = {}
        waiter = threading.Thread(
            target=lambda: got.setdefault("cache", _build(teacher, ds, tmp_path))
        )
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive()  # blocked on the lock
        real_build(teacher, ds, tmp_path / key, [0, 3], 0, 5, False)  # the first job's build
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(timeout=30)
    assert not waiter.is_alive() and builds == []  # it read the finished entry
    assert got["cache"].path == tmp_path / key
