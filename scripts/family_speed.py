"""Speed of each family's CoFi model against ``transformers``' own model of the same uniform shape
(unpruned, random weights, CPU fp32 by default), with the benchmark's protocol (warm-up dropped,
median of interleaved rounds)::

    python scripts/family_speed.py [--shape minilm|base] [--batch 32] [--seq 128] [--threads 2]
                                 [--rounds 7] [--out FILE]

The CoFi model is loaded from the vanilla checkpoint (``from_pretrained``), so both hold the same
weights; the ratio ``cofi / transformers`` above 1 means ours is slower.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from cofi_lightning.latency.timing import device_name, make_inputs, time_models
from cofi_lightning.modeling import family_of

SHAPES = {
    "minilm": dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    ),
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}
VANILLA = {
    "bert": (BertConfig, BertForSequenceClassification, {}),
    "roberta": (RobertaConfig, RobertaForSequenceClassification, {"type_vocab_size": 1}),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification, {"type_vocab_size": 1}),
    "deberta-v2": (  # DeBERTa-v3's options
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        dict(
            relative_attention=True,
            position_buckets=256,
            pos_att_type=["p2c", "c2p"],
            share_att_key=True,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
        ),
    ),
    "modernbert": (  # a global layer every third, the others +-64 tokens (ModernBERT-base's)
        ModernBertConfig,
        ModernBertForSequenceClassification,
        dict(
            pad_token_id=0,
            bos_token_id=101,
            eos_token_id=102,
            cls_token_id=101,
            sep_token_id=102,
            local_attention=128,
            global_attn_every_n_layers=3,
        ),
    ),
}


def measure(name: str, shape: dict, batch: int, seq: int, warmup: int, rounds: int) -> dict:
    config_cls, model_cls, extra = VANILLA[name]
    torch.manual_seed(0)
    config = config_cls(
        vocab_size=30522, max_position_embeddings=seq + 2, **shape, **extra, num_labels=2
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_cls(config).save_pretrained(tmp)
        theirs = model_cls.from_pretrained(tmp).eval()
        ours = family_of(name).sequence_classification.from_pretrained(tmp).eval()
    inputs = make_inputs(batch, seq, config.vocab_size, torch.device("cpu"))
    if name != "bert":
        inputs.pop("token_type_ids")
    times = time_models({"transformers": theirs, "cofi": ours}, inputs, warmup, rounds)
    t, c = times["transformers"].median_ms, times["cofi"].median_ms
    return {"family": name, "transformers_ms": t, "cofi_ms": c, "ratio": c / t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--families", nargs="+", default=sorted(VANILLA))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        measure(f, SHAPES[args.shape], args.batch, args.seq, args.warmup, args.rounds)
        for f in args.families
    ]
    report = {
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "shape": args.shape,
        "batch": args.batch,
        "seq": args.seq,
        "threads": args.threads,
        "rounds": args.rounds,
        "rows": rows,
    }
    print(
        f"| family | transformers ms | cofi ms | cofi / transformers |  ({args.shape}, "
        f"batch {args.batch} x {args.seq}, {args.threads} threads)"
    )
    print("|---|---|---|---|")
    for r in rows:
        t, c = r["transformers_ms"], r["cofi_ms"]
        print(f"| {r['family']} | {t:.1f} | {c:.1f} | {r['ratio']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
