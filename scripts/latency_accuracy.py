"""How well a latency table predicts: the expected latency against a Monte-Carlo mean, and the
table's latency of random pruned structures against their measured latency.

1. ℓ̂ (the latency at the expected structure) against the mean table latency of structures
   sampled from the gates, for gates with random log-alphas (``--mc-trials`` settings);
2. ``--structures`` random pruned models (random heads and FFN width per layer, some sublayers
   removed, random hidden size), each built with random weights and timed with the benchmark's
   protocol on the table's device settings, against the table's latency of that structure.

    python scripts/latency_accuracy.py --table T.json --model DIR [--structures 20] [--out F]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
from transformers import AutoConfig

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency import LatencyTable, expected_latency, structure_latency
from cofi_lightning.latency.timing import make_inputs, time_models
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.modeling.structure import Structure


def _random_structure(config: CoFiBertConfig, rng: random.Random) -> dict[str, list[int] | int]:
    layers = config.num_hidden_layers
    heads = [rng.choice([0, rng.randint(1, config.num_attention_heads)]) for _ in range(layers)]
    widths = [
        rng.choice([0] + [rng.randint(1, config.intermediate_size)] * 3) for _ in range(layers)
    ]
    hidden = rng.randint(config.hidden_size // 4, config.hidden_size)
    return {"num_heads": heads, "intermediate_sizes": widths, "hidden_size": hidden}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--model", required=True, help="the profiled model (its config)")
    parser.add_argument("--structures", type=int, default=20)
    parser.add_argument("--mc-trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    table = LatencyTable.load(args.table)
    meta = table.meta
    if meta.get("threads"):
        torch.set_num_threads(meta["threads"])
    config = CoFiBertConfig.from_bert_config(AutoConfig.from_pretrained(args.model), num_labels=2)
    masks = CoFiMasks(config)
    g = torch.Generator().manual_seed(0)
    mc_errors = []
    for _ in range(args.mc_trials):
        with torch.no_grad():
            for gate in masks.gates.values():
                gate.log_alpha.uniform_(-3, 4, generator=g)
            estimate = float(expected_latency(masks, table))
            samples = [
                structure_latency(table, masks.structure(masks.sample(masks.noise(g))))
                for _ in range(500)
            ]
        mean = statistics.mean(samples)
        mc_errors.append(abs(estimate - mean) / mean)
    rng = random.Random(0)
    device = torch.device(meta.get("device", "cpu"))
    rows = []
    for i in range(args.structures):
        structure = _random_structure(config, rng)
        pruned = CoFiBertConfig.from_bert_config(config, **structure)
        model = CoFiBertForSequenceClassification(pruned).to(device).eval()
        inputs = make_inputs(meta["batch"], meta["seq"], config.vocab_size, device)
        measured = time_models({"m": model}, inputs, 2, args.rounds)["m"].median_ms
        predicted = structure_latency(table, Structure.from_dict(structure))
        rows.append(
            {
                **structure,
                "measured_ms": measured,
                "table_ms": predicted,
                "relative_error": abs(predicted - measured) / measured,
            }
        )
        print(
            f"{i:2d} measured {measured:8.1f} ms  table {predicted:8.1f} ms  "  # noqa: T201
            f"error {rows[-1]['relative_error']:.1%}",
            flush=True,
        )
    errors = [r["relative_error"] for r in rows]
    summary = {
        "table": args.table,
        "device": meta.get("device_name"),
        "threads": meta.get("threads"),
        "batch": meta["batch"],
        "seq": meta["seq"],
        "expected_vs_monte_carlo_relative_error": {
            "median": statistics.median(mc_errors),
            "max": max(mc_errors),
        },
        "table_vs_measured_relative_error": {
            "median": statistics.median(errors),
            "max": max(errors),
        },
        "structures": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "structures"}, indent=2))  # noqa: T201
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
