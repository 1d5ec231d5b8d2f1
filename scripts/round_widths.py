"""What rounding FFN widths to multiples of k buys: pruned structures with odd widths against the
same structures with every width rounded to the nearest multiple of k, the total FFN width kept
equal (the rounding error of one layer is given back or taken from the others, by whole
multiples), so both have (almost) the same parameter count. Random weights; forward latency with
the benchmark's protocol::

    python scripts/round_widths.py [--model DIR] [--multiple 64] [--structures 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
from transformers import AutoConfig

from cofi_lightning.latency.timing import make_inputs, time_models
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared/models/all-MiniLM-L6-v2"


def _rounded(widths: list[int], k: int, cap: int) -> list[int]:
    """Each width to a multiple of k (>= k), then the total matched by whole multiples."""
    out = [min(cap, max(k, round(w / k) * k)) for w in widths]
    target = sum(widths)
    order = sorted(range(len(out)), key=lambda i: widths[i] - out[i])
    while sum(out) - target >= k:  # too wide: take k from the layer rounded up most
        i = order.pop(0) if order else 0
        out[i] = max(k, out[i] - k)
    while target - sum(out) >= k:  # too narrow: give k to the layer rounded down most
        i = max(range(len(out)), key=lambda j: widths[j] - out[j])
        out[i] = min(cap, out[i] + k)
    return out


def _model(config: CoFiBertConfig, heads: list[int], widths: list[int]):
    pruned = CoFiBertConfig.from_bert_config(config, num_heads=heads, intermediate_sizes=widths)
    return CoFiBertForSequenceClassification(pruned).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--multiple", type=int, default=64)
    parser.add_argument("--structures", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = CoFiBertConfig.from_bert_config(AutoConfig.from_pretrained(args.model), num_labels=2)
    rng = random.Random(0)
    inputs = make_inputs(args.batch, args.seq, config.vocab_size, torch.device("cpu"))
    rows = []
    for i in range(args.structures):
        layers, full = config.num_hidden_layers, config.intermediate_size
        heads = [rng.randint(1, config.num_attention_heads) for _ in range(layers)]
        widths = [rng.randint(args.multiple // 2, full - args.multiple) | 1 for _ in range(layers)]
        rounded = _rounded(widths, args.multiple, full)
        torch.manual_seed(i)
        models = {"odd": _model(config, heads, widths), "rounded": _model(config, heads, rounded)}
        t = time_models(models, inputs, 2, args.rounds)
        odd, even = t["odd"].median_ms, t["rounded"].median_ms
        rows.append(
            {
                "heads": heads,
                "widths": widths,
                "rounded_widths": rounded,
                "odd_ms": odd,
                "rounded_ms": even,
                "speedup": odd / even,
                "params_ratio": models["rounded"].num_encoder_params()
                / models["odd"].num_encoder_params(),
            }
        )
        print(
            f"{i}: odd {odd:7.1f} ms  rounded {even:7.1f} ms  x{odd / even:.3f}  "  # noqa: T201
            f"params x{rows[-1]['params_ratio']:.4f}",
            flush=True,
        )
    speedups = [r["speedup"] for r in rows]
    summary = {
        "model": Path(args.model).name,
        "multiple": args.multiple,
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "median_speedup_of_rounding": statistics.median(speedups),
        "min": min(speedups),
        "max": max(speedups),
        "structures": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "structures"}, indent=2))  # noqa: T201
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
