"""Forward-pass matmul FLOPs of a (pruned) BERT encoder, for "FLOP-ideal" speedups (element-wise
work, embeddings and the task head are a few percent of a forward pass and left out)."""

from __future__ import annotations

from collections.abc import Sequence

from cofi_lightning.modeling.structure import Structure


def encoder_forward_flops(
    hidden: int,
    num_heads: Sequence[int],
    intermediate_sizes: Sequence[int],
    head_size: int,
    batch: int,
    seq: int,
) -> int:
    """Matmul FLOPs of one encoder forward pass of ``batch`` sequences of padded length ``seq``.

    Per layer with n heads and m FFN dimensions, for ``T = batch * seq`` tokens::

        Q, K, V, O projections:   2 * T * 4 * hidden * n * d
        scores and context:       2 * batch * n * seq * seq * d * 2
        FFN in and out:           2 * T * 2 * hidden * m
    """
    tokens = batch * seq
    total = 0
    for n, m in zip(num_heads, intermediate_sizes, strict=True):
        total += 2 * tokens * 4 * hidden * n * head_size
        total += 2 * batch * n * seq * seq * head_size * 2
        total += 2 * tokens * 2 * hidden * m
    return total


def config_forward_flops(config, batch: int, seq: int) -> int:
    """:func:`encoder_forward_flops` for a ``CoFiBertConfig`` (or a uniform ``BertConfig``)."""
    s = Structure.from_config(config)
    d = (
        getattr(config, "attention_head_size", None)
        or config.hidden_size // config.num_attention_heads
    )
    return encoder_forward_flops(s.hidden_size, s.num_heads, s.intermediate_sizes, d, batch, seq)
