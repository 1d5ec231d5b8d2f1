"""The teacher cache serves what the live teacher computes, is keyed so it is never stale, and
fails clearly when it cannot be built."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig

from cofi_lightning.config import ConfigError, DistillConfig, PruningConfig
from cofi_lightning.core.distillation import LayerDistiller
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.data.base import IndexedDataset, PadCollator
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.run.teacher_cache import TeacherCache, open_or_build
from cofi_lightning.training.lit_module import CoFiSystem
from cofi_lightning.training.parts import Distillation, Pruning

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
        kwargs = dict(stage=stage, pruning=Pruning(CoFiMasks(student.config), stage, seed=3))
    else:
        kwargs = dict(stage=PruningConfig().finetune)
    distiller = LayerDistiller(teacher.config.hidden_size)
    objective = Distillation(teacher, DistillConfig(), distiller)
    return CoFiSystem(student, task="sst2", objective=objective, **kwargs)


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
        system.objective.cache = cache if name == "cached" else None
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


def _killed_pid() -> int:
    """The pid of a process that has exited (as a build killed with SIGKILL would have)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_builds_folder_is_removed_but_no_live_or_foreign_one(tmp_path):
    """A build killed outright leaves ``<key>.tmp-<host>-<pid>/``: the next job removes it, but
    never the folder of a live process or of another host (whose processes it cannot see)."""
    import os
    import socket

    host, dead = socket.gethostname(), _killed_pid()
    killed = tmp_path / f"0123456789abcdef0123.tmp-{host}-{dead}"
    legacy = tmp_path / f"0123456789abcdef0124.tmp-{dead}"  # the name before hosts were recorded
    live = tmp_path / f"0123456789abcdef0125.tmp-{host}-{os.getpid()}"
    foreign = tmp_path / f"0123456789abcdef0126.tmp-another-host-{dead}"
    for folder in (killed, legacy, live, foreign):
        folder.mkdir()
        (folder / "hidden.npy").write_bytes(b"\0" * 64)
    cache = _build(_model(1), _dataset(), tmp_path)
    assert not killed.exists() and not legacy.exists()
    assert live.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(
        [cache.path.name, live.name, foreign.name]
    )


def test_a_killed_builds_folder_is_kept_while_its_key_is_being_built(tmp_path):
    """A dead pid is not enough: a job holding the key's lock may be building under a reused
    pid, so the folder waits for a later sweep."""
    import fcntl
    import socket

    from cofi_lightning.run.teacher_cache import remove_stale_builds

    key = "0123456789abcdef0123"
    stale = tmp_path / f"{key}.tmp-{socket.gethostname()}-{_killed_pid()}"
    stale.mkdir()
    with open(tmp_path / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert remove_stale_builds(tmp_path) == [] and stale.exists()
    assert remove_stale_builds(tmp_path) == [stale] and not stale.exists()


def test_an_interrupted_build_leaves_no_temporary_folder(tmp_path, monkeypatch):
    teacher, ds = _model(1), _dataset()
    monkeypatch.setattr(teacher, "forward", lambda *a, **k: (_ for _ in ()).throw(MemoryError))
    with pytest.raises(MemoryError):
        _build(teacher, ds, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def _damage(kind: str, entry) -> None:
    """Truncate, corrupt in place (same size) or strip the checksums of an entry."""
    import json

    hidden = entry / "hidden.npy"
    if kind == "truncated":
        with open(hidden, "r+b") as f:
            f.truncate(hidden.stat().st_size // 2)
    elif kind == "corrupted":
        with open(hidden, "r+b") as f:  # a run of fp16 values past the header set to 1.0
            f.seek(hidden.stat().st_size // 2)
            f.write(b"\x00\x3c" * 64)
    else:
        meta = json.loads((entry / "meta.json").read_text())
        meta.pop("files", None)
        (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", ["truncated", "corrupted", "unchecked"])
def test_a_damaged_entry_is_named_and_rebuilt_never_served(tmp_path, kind, caplog):
    """A truncated file used to fail with numpy's bare ``mmap length is greater than file size``;
    values damaged in place were served silently. Opening names the entry; ``open_or_build``
    rebuilds it with one warning and serves what the teacher computes."""
    teacher, ds = _model(1), _dataset()
    first = _build(teacher, ds, tmp_path)
    batch = _batch(ds, list(range(len(ds))))
    seq = batch["input_ids"].shape[1]
    want = first.batch(batch["example_index"], seq, torch.device("cpu")).hidden.clone()
    del first
    entry = tmp_path / next(p.name for p in tmp_path.iterdir() if p.is_dir())
    _damage(kind, entry)
    with pytest.raises(ConfigError) as err:  # a user error: one line in train.py, no traceback
        TeacherCache(entry)
    message = str(err.value)
    assert "\n" not in message and str(entry) in message
    assert message.startswith("distill.teacher_cache entry")
    if kind != "unchecked":
        assert "hidden.npy" in message
    with caplog.at_level("WARNING", logger="cofi_lightning.run.teacher_cache"):
        again = _build(teacher, ds, tmp_path)
    assert again.path == entry
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and str(entry) in warned[0] and "rebuilding" in warned[0]
    got = again.batch(batch["example_index"], seq, torch.device("cpu")).hidden
    assert torch.equal(got, want)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [entry.name]


def test_a_damaged_entry_that_cannot_be_removed_stops_with_one_line(tmp_path, monkeypatch):
    """E.g. a read-only shared cache: no silent use, no deep traceback, the entry is named."""
    from cofi_lightning.run import teacher_cache

    teacher, ds = _model(1), _dataset()
    entry = _build(teacher, ds, tmp_path).path
    _damage("truncated", entry)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(teacher_cache.os, "replace", refuse)
    with pytest.raises(ConfigError) as err:  # a user error: one line in train.py
        _build(teacher, ds, tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(entry) in message and "hidden.npy" in message
    assert "Permission denied" in message and "distill.teacher_cache=false" in message
