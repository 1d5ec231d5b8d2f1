"""Under ``trainer=ddp`` (2 CPU processes, gloo) a short pruning run works and both ranks train the
same sub-network at every step."""

from __future__ import annotations

import json

import pytest


def _ddp_overrides(tiny_overrides, tmp_path) -> list[str]:
    """The tiny demo run under ``trainer=ddp`` in ``tmp_path / "run"``."""
    overrides = [o for o in tiny_overrides(tmp_path / "run") if not o.startswith("experiment=")]
    return ["experiment=demo", *overrides, "trainer=ddp", f"hydra.run.dir={tmp_path / 'hydra'}"]


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_ddp_ranks_share_masks(tiny_overrides, train_cli, tmp_path):
    run_dir = tmp_path / "run"
    train_cli(
        *_ddp_overrides(tiny_overrides, tmp_path),
        "ablation=no_distill",
        "stages=[teacher,prune]",
        "pruning.epochs=1",  # 3 steps per process: pre-pruning 1 + warm-up 1 reach the target
        "pruning.lagrangian_warmup_steps=1",
        "+callbacks.mask_digest._target_=tests.training.mask_digest.MaskDigest",
    )
    rank0 = json.loads((run_dir / "prune" / "mask_digests_rank0.json").read_text())
    rank1 = json.loads((run_dir / "prune" / "mask_digests_rank1.json").read_text())
    assert len(rank0) >= 2 and rank0 == rank1
    assert len(set(rank0.values())) == len(rank0)  # a fresh sample every step
    assert (run_dir / "prune" / "DONE.json").is_file()
    assert (run_dir / "prune" / "best" / "masks.pt").is_file()


@pytest.mark.slow
def test_ddp_full_pipeline_counts_each_eval_example_once(tiny_overrides, train_cli, tmp_path):
    """All four stages under ``trainer=ddp``; 31 evaluation sentences (odd, so a padding sampler
    would count one twice): every accuracy must be a multiple of 1/31."""
    train_cli(
        *_ddp_overrides(tiny_overrides, tmp_path),
        "task.datamodule.limit_eval_samples=31",
        timeout=900,
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for accuracy in (results["teacher"]["accuracy"], results["pruned"]["accuracy"]):
        correct = accuracy / 100 * 31
        assert correct == pytest.approx(round(correct), abs=1e-6)
    assert results["params"]["pruned"] < results["params"]["unpruned"]


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_ddp_posttrain_prunes_once_and_exports_what_rank_zero_saved(
    tiny_overrides, train_cli, tmp_path
):
    """``pruning.method=posttrain`` under DDP: the structure rank 0 writes (tuned scales) is the
    one the finetune, trained on both ranks, starts from and the export counts."""
    import torch

    run_dir = tmp_path / "run"
    train_cli(
        *_ddp_overrides(tiny_overrides, tmp_path),
        "pruning.method=posttrain",
        "pruning.posttrain.num_samples=20",
        "pruning.posttrain.batch_size=8",
        "pruning.posttrain.rescale=always",
        "pruning.finetune.max_steps=2",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "posttrain"
    masks = torch.load(run_dir / "prune" / "best" / "masks.pt", weights_only=True)
    assert ((masks["intermediate"] != 0) & (masks["intermediate"] != 1)).any()  # tuned scales
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert results["sparsity"] == meta["deterministic_sparsity"] >= 0.3
    assert json.loads((run_dir / "finetune" / "DONE.json").read_text())["metrics"]
