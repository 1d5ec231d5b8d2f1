"""Cost of a CoFi pruning step against a plain fine-tuning step of the same student.

All steps run on the same batches, fp32, on the CPU by default:

* plain: student forward with labels + backward + weight clipping + AdamW step;
* prune: :meth:`CoFiSystem.training_step` with sampled masks, the frozen teacher's forward, the
  prediction and layer distillation losses and the Lagrangian, then backward + clipping + one AdamW
  step over weights, log-alphas and multipliers + log-alpha clamp; with every unit open (the
  start of pruning) and with the gates set to a structure at each ``--sparsity`` (closed units
  are not computed, so the step gets cheaper as pruning proceeds);
* prune_cached: the same with the teacher's outputs read from the teacher cache
  (``distill.teacher_cache``) instead of a teacher forward;
* masks: a fresh noise draw, ``CoFiMasks.sample`` and ``expected_sparsity`` with its backward.

Batches: random ids at ``--seq`` tokens, or ``--lengths sst2``: real SST-2 training sentences
(batch-padded as in training). Medians of interleaved rounds::

    python scripts/train_step.py [--model DIR] [--batch 32] [--seq 128] [--lengths fixed|sst2]
        [--sparsity 0.6 0.9] [--rounds 5] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from cofi_lightning.config import OptimConfig, PruningConfig
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertForSequenceClassification
from cofi_lightning.training.lit_module import CoFiSystem
from cofi_lightning.training.optim import WEIGHT_GROUPS, build_optimizer, group_params

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared/models/all-MiniLM-L6-v2"
SST2_TRAIN = Path(__file__).resolve().parents[1].parent / "shared/data/glue/sst2/train.parquet"


def _timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _batches(args, model_dir: str, vocab: int, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` batches of ``args.batch`` examples (random ids, or real SST-2 sentences)."""
    g = torch.Generator().manual_seed(0)
    out = []
    if args.lengths == "sst2":
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from cofi_lightning.data.base import PadCollator

        sentences = pq.read_table(SST2_TRAIN, columns=["sentence"]).column(0).to_pylist()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        collate = PadCollator(tokenizer.pad_token_id)
        for _ in range(count):
            pick = torch.randperm(len(sentences), generator=g)[: args.batch].tolist()
            enc = tokenizer([sentences[i] for i in pick], truncation=True, max_length=args.seq)
            rows = [
                {**{k: enc[k][r] for k in enc}, "labels": r % 2, "example_index": r}
                for r in range(args.batch)
            ]
            out.append(collate(rows))
        return out
    for _ in range(count):
        out.append(
            {
                "input_ids": torch.randint(1000, vocab, (args.batch, args.seq), generator=g),
                "attention_mask": torch.ones(args.batch, args.seq, dtype=torch.long),
                "token_type_ids": torch.zeros(args.batch, args.seq, dtype=torch.long),
                "labels": torch.randint(0, 2, (args.batch,), generator=g),
                "example_index": torch.arange(args.batch),
            }
        )
    return out


def _cache_for(teacher, batch, root: Path, layers: list[int]):
    """A teacher cache of one batch's rows (example i = row i), built like the pipeline's."""
    from datasets import Dataset

    from cofi_lightning.run.teacher_cache import open_or_build

    real = batch["attention_mask"].bool()
    rows = {
        k: [batch[k][r][real[r]].tolist() for r in range(len(real))]
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }
    return open_or_build(
        teacher,
        Dataset.from_dict(rows),
        features_key=f"bench-{root.name}",
        layers=layers,
        root=root,
        pad_token_id=0,
        progress=False,
    )


def _close_to(masks: CoFiMasks, sparsity: float, seed: int = 0) -> None:
    """Set the gates to a structure of about ``sparsity``: a random fraction of the heads and
    FFN dims open (log-alpha +5), the rest closed (-5); layer gates and hidden dims open."""
    g = torch.Generator().manual_seed(seed)
    draws = {u: torch.rand(masks.gates[u].log_alpha.shape, generator=g) for u in masks.gates}
    low, high = 0.0, 1.0
    for _ in range(30):  # bisect the kept fraction
        keep = (low + high) / 2
        with torch.no_grad():
            for unit, gate in masks.gates.items():
                closed = draws[unit] >= keep if unit in ("head", "intermediate") else False
                gate.log_alpha.fill_(5.0)
                gate.log_alpha[closed] = -5.0
            got = float(masks.sparsity(masks.deterministic()))
        low, high = (keep, high) if got > sparsity else (low, keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128, help="tokens (max length for sst2)")
    parser.add_argument("--lengths", choices=["fixed", "sst2"], default="fixed")
    parser.add_argument("--sparsity", type=float, nargs="*", default=[0.6, 0.9])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # self.log outside a Trainer warns once per key

    torch.manual_seed(0)
    plain = CoFiBertForSequenceClassification.from_pretrained(args.model, num_labels=2).train()
    student = CoFiBertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    teacher = CoFiBertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    batches = _batches(args, args.model, plain.config.vocab_size, args.rounds + 1)
    optim = OptimConfig()
    plain_opt = build_optimizer(plain.named_parameters(), optim, lr=2e-5)
    at = {"i": 0}

    def batch() -> dict[str, torch.Tensor]:
        return batches[at["i"] % len(batches)]

    def plain_step() -> None:
        inputs = {k: v for k, v in batch().items() if k != "example_index"}
        plain(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(group_params(plain_opt, WEIGHT_GROUPS), 1.0)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    masks = CoFiMasks(student.config)
    system = CoFiSystem(
        student,
        task="sst2",
        stage=PruningConfig(
            target_sparsity=0.6, lagrangian_warmup_steps=0, pre_pruning_steps=0, reg_lr=0.01
        ),
        optim=optim,
        freeze_embeddings=True,
        masks=masks,
        teacher=teacher,
    )
    prune_opt = build_optimizer(
        system._weights(),
        optim,
        lr=2e-5,
        reg_lr=0.01,
        freeze_embeddings=True,
        log_alphas=masks.mask_parameters(),
        multipliers=system.multipliers,
    )
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="train_step_cache_"))
    layers = system.layer_distiller.distilled_layers(teacher.config.num_hidden_layers)
    caches = [_cache_for(teacher, b, tmp / str(i), layers) for i, b in enumerate(batches)]

    def prune_step(cached: bool) -> None:
        system.teacher_cache = caches[at["i"] % len(batches)] if cached else None
        system._noise_step = -1  # outside a Trainer global_step stays 0: force a fresh draw
        system.training_step(batch(), 0).backward()
        system.configure_gradient_clipping(prune_opt)
        prune_opt.step()
        prune_opt.zero_grad(set_to_none=True)
        masks.clamp_()

    generator = torch.Generator().manual_seed(0)

    def mask_work() -> None:
        z = masks.sample(masks.noise(generator))
        s_hat = masks.expected_sparsity()
        (s_hat + sum(t.sum() for _, t in z.items()) * 0).backward()
        for p in masks.mask_parameters():
            p.grad = None

    initial = {u: g.log_alpha.detach().clone() for u, g in masks.gates.items()}
    states = {"open": None, **{f"s{s}": s for s in args.sparsity}}
    kinds = ["plain", "masks"] + [f"{k}_{state}" for state in states for k in ("prune", "cached")]
    times: dict[str, list[float]] = {k: [] for k in kinds}

    def set_state(target: float | None) -> None:
        with torch.no_grad():
            for unit, gate in masks.gates.items():
                gate.log_alpha.copy_(initial[unit])
        if target is not None:
            _close_to(masks, target)

    for r in range(args.rounds + 1):  # round 0 warms up; interleaved, so load hits all alike
        at["i"] = r
        warm = r == 0
        t = _timed(plain_step, 1)
        if not warm:
            times["plain"] += t
        for state, target in states.items():
            set_state(target)
            for kind, cached in (("prune", False), ("cached", True)):
                t = _timed(lambda cached=cached: prune_step(cached), 1)
                if not warm:
                    times[f"{kind}_{state}"] += t
        set_state(None)
        t = _timed(mask_work, 5)
        if not warm:
            times["masks"] += t
    med = {k: statistics.median(v) for k, v in times.items()}
    lengths = [int(b["attention_mask"].shape[1]) for b in batches]
    result = {
        "device": platform.processor() or platform.machine(),
        "threads": args.threads,
        "model": Path(args.model).name,
        "batch": args.batch,
        "lengths": args.lengths,
        "seq": args.seq if args.lengths == "fixed" else statistics.median(lengths),
        "seconds": med,
        "prune_over_plain": med["prune_open"] / med["plain"],
        "speedup_vs_live_teacher_all_open": {
            state: med["prune_open"] / med[f"cached_{state}"] for state in states
        },
        "masks_share_of_prune_step": med["masks"] / med["prune_open"],
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)  # noqa: T201  (a CLI script's output)


if __name__ == "__main__":
    main()
