"""Cost of a CoFi pruning step against a plain fine-tuning step of the same student.

Both steps run on the same batch (random token ids, fixed length), fp32, on the CPU by default:

* plain: student forward with labels + backward + weight clipping + AdamW step;
* prune: :meth:`CoFiSystem.training_step` with sampled masks, the frozen teacher's forward, the
  prediction and layer distillation losses and the Lagrangian, then backward + clipping + one AdamW
  step over weights, log-alphas and multipliers + log-alpha clamp;
* masks: a fresh noise draw, ``CoFiMasks.sample`` and ``expected_sparsity`` with its backward (the
  mask-only work inside a pruning step).

Targets (issue 4): prune / plain <= 1.5 and masks / prune < 5%. Medians of interleaved rounds::

    python bench/train_step.py [--model DIR] [--batch 32] [--seq 128] [--rounds 5] [--threads 2]
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
from cofi_lightning.lit_module import CoFiSystem
from cofi_lightning.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertForSequenceClassification
from cofi_lightning.optim import WEIGHT_GROUPS, build_optimizer, group_params

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared/models/all-MiniLM-L6-v2"


def _timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
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
    vocab = plain.config.vocab_size
    batch = {
        "input_ids": torch.randint(1000, vocab, (args.batch, args.seq)),
        "attention_mask": torch.ones(args.batch, args.seq, dtype=torch.long),
        "token_type_ids": torch.zeros(args.batch, args.seq, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch,)),
    }
    optim = OptimConfig()
    plain_opt = build_optimizer(plain.named_parameters(), optim, lr=2e-5)

    def plain_step() -> None:
        plain(**batch).loss.backward()
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
        masks=masks,
        teacher=teacher,
    )
    prune_opt = build_optimizer(
        system._weights(),
        optim,
        lr=2e-5,
        reg_lr=0.01,
        log_alphas=masks.mask_parameters(),
        multipliers=system.multipliers,
    )

    def prune_step() -> None:
        system._noise_step = -1  # outside a Trainer global_step stays 0: force a fresh draw
        system.training_step(batch, 0).backward()
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

    for fn in (plain_step, prune_step, mask_work):  # warm-up
        fn()
    times: dict[str, list[float]] = {"plain": [], "prune": [], "masks": []}
    for _ in range(args.rounds):  # interleaved, so load changes hit both alike
        times["plain"] += _timed(plain_step, 1)
        times["prune"] += _timed(prune_step, 1)
        times["masks"] += _timed(mask_work, 5)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": platform.processor() or platform.machine(),
        "threads": args.threads,
        "model": Path(args.model).name,
        "batch": args.batch,
        "seq": args.seq,
        "seconds": med,
        "prune_over_plain": med["prune"] / med["plain"],
        "masks_share_of_prune_step": med["masks"] / med["prune"],
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)  # noqa: T201  (a CLI script's output)


if __name__ == "__main__":
    main()
