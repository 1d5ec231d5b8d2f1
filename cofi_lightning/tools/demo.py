"""Pruning-exactness demo: prune a real BERT with CoFi masks and check the compact model is exact.

Run with ``python -m cofi_lightning.tools.demo [model]`` (``make demo``). The model defaults to
``../shared/models/all-MiniLM-L6-v2`` beside the repository, else ``$COFI_MODEL``, else a small hub
BERT. The demo sets random mask log-alphas (as if training had moved them), takes CoFi's
deterministic evaluation masks, physically prunes, and reports: the predicted and the real encoder
parameter counts, the max difference between the masked and the compact model's logits, that the
exported directory reloads through ``AutoModelForSequenceClassification``, and the speedup.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertForSequenceClassification

log = logging.getLogger("cofi_lightning.tools.demo")
REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_FALLBACK = "google/bert_uncased_L-2_H-128_A-2"


def default_model() -> str:
    """``$COFI_MODEL``, else the MiniLM copy in ``../shared/models``, else a small hub BERT."""
    if os.environ.get("COFI_MODEL"):
        return os.environ["COFI_MODEL"]
    shared = REPO_ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
    return str(shared) if shared.is_dir() else HUB_FALLBACK


def _latency_ms(model, batch: dict, rounds: int = 5) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(rounds + 1):
            start = time.perf_counter()
            model(**batch)
            times.append((time.perf_counter() - start) * 1e3)
    return sorted(times[1:])[rounds // 2]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=default_model())
    parser.add_argument("--seed", type=int, default=0)
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
            f"unreachable ({err.__class__.__name__}). Put ../shared beside the repository, set "
            "COFI_MODEL to a local BERT directory, or pass a directory as the first argument."
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
        "latency_ms_full": _latency_ms(model, batch),
        "latency_ms_compact": _latency_ms(compact, batch),
        "structure": {
            "hidden_size": compact.config.hidden_size,
            "num_heads": compact.config.num_heads,
            "intermediate_sizes": compact.config.intermediate_sizes,
        },
    }
    for key, value in report.items():
        log.info("%-32s %s", key, f"{value:.6g}" if isinstance(value, float) else value)
    ok = report["encoder_params_predicted"] == kept and max_diff <= 1e-4 and reload_diff == 0
    log.info("exact: %s", "yes" if ok else "NO")
    if not ok:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
