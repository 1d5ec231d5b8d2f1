"""Checks of the data pipeline on real data, runnable as ``python -m cofi_lightning.data.check``.

This file owns two measurements reported for the data issue, shared by the slow tests and the
command:

* ``squad_round_trip``: every gold answer's character span is turned into token start/end positions
  in each evaluation window that contains it, those positions into one-hot logits, and the logits
  back into text through ``SquadDataModule.postprocess``; the share of answers recovered verbatim is
  the ceiling the windowing, offsets and post-processing put on EM.
* ``time_tokenization``: building a GLUE task's features twice into the same cache (the second run
  is a cache hit).

Usage::

    python -m cofi_lightning.data.check squad tokenizer=<dir> [data_dir=..] [cache_dir=..]
    python -m cofi_lightning.data.check cache tokenizer=<dir> task=sst2 [cache_dir=..]
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from cofi_lightning.data.glue import GlueDataModule
from cofi_lightning.data.sources import default_data_dir
from cofi_lightning.data.squad import SquadDataModule, eval_lookup
from cofi_lightning.data.squad_features import char_span_to_token_span

log = logging.getLogger(__name__)

_MISS = -1.0e4  # logit of every non-gold position; far below the gold pair's score of 0


@dataclass
class RoundTrip:
    """Result of :func:`squad_round_trip`.

    Attributes:
        answers: Distinct gold (start, text) answers tried.
        recovered: How many came back character-for-character.
        recovered_normalized: How many came back equal after SQuAD answer normalisation.
        answers_with_duplicates: Gold answers counted with their repeats (as listed in the data).
        recovered_with_duplicates: Of those, recovered verbatim.
        failures: Up to 20 ``(id, gold, recovered)`` examples of misses.
    """

    answers: int
    recovered: int
    recovered_normalized: int
    answers_with_duplicates: int
    recovered_with_duplicates: int
    failures: list[tuple[str, str, str]]

    @property
    def rate(self) -> float:
        """Share of distinct answers recovered verbatim, in percent."""
        return 100.0 * self.recovered / self.answers


def squad_round_trip(dm: SquadDataModule) -> RoundTrip:
    """Gold span -> token positions -> logits -> ``postprocess`` -> text, for every gold answer.

    Args:
        dm: A set-up SQuAD module (``setup("validate")``).
    """
    from cofi_lightning.metrics import normalize_answer

    offsets, example_index, _, ids = eval_lookup(dm.eval_features, dm.eval_examples)
    golds = []  # per example: distinct (start_char, text) and how often each is listed
    for ans in dm.eval_examples["answers"]:
        pairs = list(zip(ans["answer_start"], ans["text"], strict=True))
        golds.append({p: pairs.count(p) for p in dict.fromkeys(pairs)})
    ordered = [list(g) for g in golds]
    result = RoundTrip(0, 0, 0, 0, 0, [])
    for k in range(max(len(g) for g in ordered)):
        starts, ends = [], []
        for f, spans in enumerate(offsets):
            start = np.full(len(spans), _MISS)  # [T_f]
            end = np.full(len(spans), _MISS)
            gold = ordered[example_index[f]]
            if k < len(gold):
                start_char, text = gold[k]
                span = char_span_to_token_span(
                    spans, spans[:, 0] >= 0, start_char, start_char + len(text)
                )
                if span is not None:
                    start[span[0]] = end[span[1]] = 0.0
            starts.append(start)
            ends.append(end)
        predictions = dm.postprocess(starts, ends)
        for row, gold in enumerate(ordered):
            if k >= len(gold):
                continue
            text = gold[k][1]
            got = predictions[ids[row]]
            repeats = golds[row][gold[k]]
            result.answers += 1
            result.answers_with_duplicates += repeats
            if got == text:
                result.recovered += 1
                result.recovered_with_duplicates += repeats
            elif len(result.failures) < 20:
                result.failures.append((ids[row], text, got))
            result.recovered_normalized += normalize_answer(got) == normalize_answer(text)
    return result


def time_tokenization(task: str, tokenizer: Any, data_dir: str | None, cache_dir: str) -> dict:
    """Seconds for ``setup("fit")`` of a GLUE task into an empty cache, then again from it.

    Returns:
        ``{"first_s", "second_s", "first_hits", "second_hits", "train_rows", "eval_rows"}``.
    """
    out: dict[str, Any] = {}
    for run in ("first", "second"):
        dm = GlueDataModule(task, tokenizer, data_dir=data_dir, cache_dir=cache_dir)
        tic = time.perf_counter()
        dm.setup("fit")
        out[f"{run}_s"] = time.perf_counter() - tic
        out[f"{run}_hits"] = dict(dm.cache_hits)
    out["train_rows"] = len(dm.train_dataset)
    out["eval_rows"] = {s: len(d) for s, d in dm.eval_datasets.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    from transformers import AutoTokenizer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("squad", "cache"):
        raise SystemExit(
            "usage: python -m cofi_lightning.data.check {squad|cache} tokenizer=<dir> .."
        )
    args = OmegaConf.from_dotlist(argv[1:])
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    data_dir = args.get("data_dir") or default_data_dir()
    if argv[0] == "cache":
        with tempfile.TemporaryDirectory() as tmp:
            cache_dir = args.get("cache_dir") or tmp
            result = time_tokenization(args.get("task", "sst2"), tokenizer, data_dir, cache_dir)
        log.info(
            "tokenization into an empty cache: %.2f s; from the cache: %.2f s; %s",
            result["first_s"],
            result["second_s"],
            result,
        )
        return
    dm = SquadDataModule(tokenizer=tokenizer, data_dir=data_dir, cache_dir=args.get("cache_dir"))
    tic = time.perf_counter()
    dm.setup("validate")
    log.info(
        "validation: %d examples -> %d features (setup %.1f s)",
        len(dm.eval_examples),
        len(dm.eval_features),
        time.perf_counter() - tic,
    )
    tic = time.perf_counter()
    rt = squad_round_trip(dm)
    log.info(
        "gold-span round trip: %d/%d distinct answers verbatim (%.3f%%), %d normalised-equal "
        "(%.3f%%), %d/%d counting duplicates (%.3f%%); %.1f s",
        rt.recovered,
        rt.answers,
        rt.rate,
        rt.recovered_normalized,
        100.0 * rt.recovered_normalized / rt.answers,
        rt.recovered_with_duplicates,
        rt.answers_with_duplicates,
        100.0 * rt.recovered_with_duplicates / rt.answers_with_duplicates,
        time.perf_counter() - tic,
    )
    for failure in rt.failures:
        log.info("miss: id=%s gold=%r got=%r", *failure)


if __name__ == "__main__":
    main()
