"""Latency of compact (physically pruned) models: how fast is the pruned shape, really?

Two measurements (fp32 or bf16 weights, CPU or CUDA, forward only, padded batch, median of
interleaved rounds; the protocol and the s95 pair come from ``cofi_lightning.tools.bench``):

1. uniform: a BERT-base-shaped model pruned to the same structure in every layer (6 heads of 64,
   1536 FFN dims, hidden 384) against vanilla ``transformers`` BERT built with that uniform config.
   The compact model should be within 10% of the vanilla one (this compares implementations, so it
   stays here rather than in the package's pruned-vs-unpruned command).
2. s95: BERT-base pruned to ~95% encoder sparsity against its dense original, with the FLOP-ideal
   speedup: the same as ``python -m cofi_lightning.tools.bench synthetic=s95 batch=32``.

Weights are random: latency depends only on shapes. Usage::

    python scripts/pruned_speed.py [--batch 32] [--seq 128] [--rounds 7] [--out F.json]
    python scripts/pruned_speed.py --device cuda --dtype bf16 --batch 128   # on a GPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from cofi_lightning.latency.timing import (
    device_name,
    make_inputs,
    resolve_device,
    resolve_dtype,
    time_models,
)
from cofi_lightning.tools.bench.compare import compare, format_table
from cofi_lightning.tools.bench.sources import structure_masks, synthetic_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--out", type=Path, default=Path("scripts/results/pruned_speed.json"))
    args = parser.parse_args()
    b, s = args.batch, args.seq
    s95, dense = synthetic_pair(seed=0)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    report = {
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "batch": b,
        "seq": s,
    }

    # 1. uniform compact model vs vanilla transformers BERT of the same uniform shape
    uniform = dense.prune(structure_masks(dense.config, [6] * 12, [1536] * 12, 384)).eval()
    vanilla = BertForSequenceClassification(
        BertConfig(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536
        )
    ).eval()
    uniform, vanilla = uniform.to(device, dtype), vanilla.to(device, dtype)
    inputs = make_inputs(b, s, dense.config.vocab_size, device)
    timings = time_models(
        {"cofi_uniform": uniform, "hf_uniform": vanilla}, inputs, args.warmup, args.rounds
    )
    lat = {name: t.median_ms for name, t in timings.items()}
    ratio = lat["cofi_uniform"] / lat["hf_uniform"]
    report["uniform"] = {
        "latency_ms": lat,
        "cofi_over_hf": ratio,
        "encoder_params": uniform.num_encoder_params(),
    }
    print(f"uniform 6x64 heads / 1536 FFN / hidden 384: {lat}  cofi/hf {ratio:.3f}")

    # 2. ~95% sparse compact model vs its dense original
    report["s95"] = compare(
        s95,
        dense,
        device=args.device,
        dtype=args.dtype,
        batch=b,
        seq=s,
        warmup=args.warmup,
        rounds=args.rounds,
        sources={"pruned": "synthetic s95", "baseline": "synthetic BERT-base"},
    )
    print(format_table(report["s95"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
