"""Latency of compact (physically pruned) models: how fast is the pruned shape, really?

Two measurements (CPU by default; fp32, forward only, padded batch, median of interleaved rounds):

1. uniform: a BERT-base-shaped model pruned to the same structure in every layer (6 heads of 64,
   1536 FFN dims, hidden 384) against vanilla ``transformers`` BERT built with that uniform config.
   The compact model should be within 10% of the vanilla one.
2. s95: a BERT-base-shaped model pruned to ~95% encoder sparsity (a CoFi-like structure: upper
   layers pruned hardest, several sublayers removed) against its dense original, with the
   FLOP-ideal speedup.

Weights are random: latency depends only on shapes. Usage::

    python bench/pruned_speed.py [--batch 32] [--seq 128] [--rounds 7] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from cofi_lightning.flops import config_forward_flops
from cofi_lightning.masks import Masks
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
# heads and FFN dims kept per layer at ~95% sparsity, shaped like CoFi's published s95 structures
S95_HEADS = [3, 2, 2, 2, 1, 1, 1, 0, 1, 0, 0, 0]
S95_FFN = [380, 260, 200, 140, 90, 60, 40, 0, 30, 0, 20, 90]
S95_HIDDEN = 704


def masks_for(heads: list[int], ffn: list[int], hidden: int) -> Masks:
    """Binary masks keeping the first heads[l] heads, ffn[l] FFN dims and hidden dims."""
    head = torch.zeros(12, 12)
    inter = torch.zeros(12, 3072)
    for layer, (n, m) in enumerate(zip(heads, ffn, strict=True)):
        head[layer, :n] = 1
        inter[layer, :m] = 1
    hid = torch.zeros(768)
    hid[:hidden] = 1
    return Masks(hidden=hid, head=head, intermediate=inter)


def time_models(models: dict[str, torch.nn.Module], batch: int, seq: int, warmup: int, rounds: int):
    """Median forward latency (ms) of each model, rounds interleaved so drift hits all equally."""
    ids = torch.randint(1000, 30000, (batch, seq))
    mask = torch.ones_like(ids)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for r in range(warmup + rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if r >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pruned_speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    b, s = args.batch, args.seq
    dense = CoFiBertForSequenceClassification(CoFiBertConfig(**BASE)).eval()
    report = {
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "batch": b,
        "seq": s,
    }

    # 1. uniform compact model vs vanilla transformers BERT of the same uniform shape
    uniform = dense.prune(masks_for([6] * 12, [1536] * 12, 384)).eval()
    vanilla = BertForSequenceClassification(
        BertConfig(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536
        )
    ).eval()
    lat = time_models(
        {"cofi_uniform": uniform, "hf_uniform": vanilla}, b, s, args.warmup, args.rounds
    )
    ratio = lat["cofi_uniform"] / lat["hf_uniform"]
    report["uniform"] = {
        "latency_ms": lat,
        "cofi_over_hf": ratio,
        "encoder_params": uniform.num_encoder_params(),
    }
    print(f"uniform 6x64 heads / 1536 FFN / hidden 384: {lat}  cofi/hf {ratio:.3f}")

    # 2. ~95% sparse compact model vs its dense original
    s95 = dense.prune(masks_for(S95_HEADS, S95_FFN, S95_HIDDEN)).eval()
    lat = time_models({"dense": dense, "s95": s95}, b, s, args.warmup, args.rounds)
    sparsity = 1 - s95.num_encoder_params() / dense.num_encoder_params()
    ideal = config_forward_flops(dense.config, b, s) / config_forward_flops(s95.config, b, s)
    speedup = lat["dense"] / lat["s95"]
    report["s95"] = {
        "latency_ms": lat,
        "encoder_params": {"dense": dense.num_encoder_params(), "pruned": s95.num_encoder_params()},
        "sparsity": sparsity,
        "speedup": speedup,
        "flop_ideal_speedup": ideal,
        "achieved_fraction_of_ideal": speedup / ideal,
        "structure": {
            "hidden_size": s95.config.hidden_size,
            "num_heads": s95.config.num_heads,
            "intermediate_sizes": s95.config.intermediate_sizes,
        },
    }
    print(
        f"s95: sparsity {sparsity:.4f}  dense {lat['dense']:.1f} ms  pruned {lat['s95']:.1f} ms  "
        f"speedup {speedup:.2f}x  FLOP-ideal {ideal:.2f}x  ({speedup / ideal:.0%} of ideal)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
