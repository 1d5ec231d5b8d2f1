"""The SQuAD round trip, a check of the whole span pipeline on real data: every gold answer's
character span -> token start/end positions -> one-hot logits -> ``postprocess`` -> text, which
must come back as the gold text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cofi_lightning.data.squad import SquadDataModule, eval_lookup
from cofi_lightning.data.squad_features import char_span_to_token_span
from cofi_lightning.training.metrics import normalize_answer

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
