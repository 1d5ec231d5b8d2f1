"""Pruning-exactness demo (``make demo``): prune a real BERT with CoFi masks and check that the
compact model is exact.

It sets random mask log-alphas (as if training had moved them), physically prunes with the
deterministic masks, and reports the predicted and real encoder parameters, the masked vs compact
logits' difference, that the export reloads through ``AutoModelForSequenceClassification``, and a
smoke-check speedup on one small CPU batch (``python -m cofi_lightning.tools.bench`` measures).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.data.sources import shared_dir
from cofi_lightning.latency.timing import time_models
from cofi_lightning.modeling import CoFiBertForSequenceClassification
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.tools.cli import int_at_least

log = logging.getLogger("cofi_lightning.tools.demo")
HUB_FALLBACK = "google/bert_uncased_L-2_H-128_A-2"


def default_model() -> str:
    """``$COFI_MODEL``, else the MiniLM copy in the shared directory, else a small hub BERT."""
    shared = Path(shared_dir()) / "models" / "all-MiniLM-L6-v2"
    return os.environ.get("COFI_MODEL") or (str(shared) if shared.is_dir() else HUB_FALLBACK)


def _spread(values: list[float]) -> tuple[float, float, float]:
    """``(median, 25th percentile, 75th percentile)`` of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


def _latency(full, compact, batch: dict, warmup: int, rounds: int) -> dict:
    """Latencies (ms) and speedup of the full and the compact model, as median and quartiles.
    Round ``i`` of both models ran under the same load (interleaved), so the speedup's spread is
    that of the per-round ratios."""
    t = time_models({"full": full, "compact": compact}, batch, warmup=warmup, rounds=rounds)
    ratios = [f / c for f, c in zip(t["full"].rounds_ms, t["compact"].rounds_ms, strict=True)]
    out = {"latency_rounds": rounds}
    for name, values in (
        ("latency_ms_full", t["full"].rounds_ms),
        ("latency_ms_compact", t["compact"].rounds_ms),
        ("speedup", ratios),
    ):
        median, q1, q3 = _spread(values)
        out[name], out[f"{name}_iqr"] = median, (q1, q3)
    return out


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return " - ".join(_show(v) for v in value)
    return str(value)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=default_model())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds",
        type=int_at_least(1),
        default=7,
        help="timed rounds per model; median and quartiles reported (default: %(default)s, as "
        "python -m cofi_lightning.tools.bench on CPU)",
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=2, help="discarded rounds (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    transformers.logging.set_verbosity_error()  # the new task head's load report is expected noise
    transformers.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    try:
        model = CoFiBertForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except OSError as err:
        raise SystemExit(
            f"cannot load model '{args.model}': not a local directory and the Hugging Face Hub is "
            f"unreachable ({err.__class__.__name__}). Put ../shared beside the repository (or set "
            "COFI_SHARED_DIR), set COFI_MODEL to a local BERT directory, or pass a directory as "
            "the first argument."
        ) from err

    masks = CoFiMasks(model.config)
    with torch.no_grad():  # stand-in for a pruning run: log-alphas spread over the clamp range
        for gate in masks.gates.values():
            gate.log_alpha.uniform_(-2.0, 4.0)
    z = masks.deterministic()
    compact = model.prune(z).eval()

    texts = [
        "A man is playing a guitar.",
        "The stock market fell sharply today, analysts said.",
    ] * 8
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    with torch.inference_mode():
        masked_logits = model(**batch, masks=z).logits
        compact_logits = compact(**batch).logits
    max_diff = (masked_logits - compact_logits).abs().max().item()

    with tempfile.TemporaryDirectory() as export_dir:
        compact.save_pretrained(export_dir)
        reloaded = AutoModelForSequenceClassification.from_pretrained(export_dir).eval()
        with torch.inference_mode():
            reload_diff = (reloaded(**batch).logits - compact_logits).abs().max().item()

    full, kept = model.num_encoder_params(), compact.num_encoder_params()
    report = {
        "model": args.model,
        "encoder_params_full": full,
        "encoder_params_predicted": masks.remaining_params(z),
        "encoder_params_real": kept,
        "sparsity": 1 - kept / full,
        "max_abs_diff_masked_vs_compact": max_diff,
        "max_abs_diff_after_reload": reload_diff,
        **_latency(model, compact, batch, args.warmup, args.rounds),
        "structure": Structure.from_config(compact.config).as_dict(),
    }
    for key, value in report.items():
        log.info("%-32s %s", key, _show(value))
    log.info(
        "latency: median (and interquartile range) of %d interleaved rounds after %d warm-up, one "
        "batch of %d short sentences on %d CPU threads: a smoke check, not a benchmark (python -m "
        "cofi_lightning.tools.bench for the protocol)",
        args.rounds,
        args.warmup,
        len(texts),
        torch.get_num_threads(),
    )
    ok = report["encoder_params_predicted"] == kept and max_diff <= 1e-4 and reload_diff == 0
    log.info("exact: %s", "yes" if ok else "NO")
    if not ok:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
