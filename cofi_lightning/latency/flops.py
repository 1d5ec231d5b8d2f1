"""Forward-pass FLOPs of a (pruned) BERT encoder, computed from its architecture.

This file owns the FLOP model used for "FLOP-ideal" speedups: the speedup a pruned model would reach
if latency were proportional to arithmetic. Only matrix multiplications are counted (2 FLOPs per
multiply-add); element-wise work, softmax, LayerNorm, embeddings and the task head are left out, as
they are a few percent of a BERT forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence


def encoder_forward_flops(
    hidden: int,
    num_heads: Sequence[int],
    intermediate_sizes: Sequence[int],
    head_size: int,
    batch: int,
    seq: int,
) -> int:
    """Matmul FLOPs of one encoder forward pass.

    Per layer with n heads and m FFN dimensions, for ``T = batch * seq`` tokens::

        Q, K, V, O projections:   2 * T * 4 * hidden * n * d
        scores and context:       2 * batch * n * seq * seq * d * 2
        FFN in and out:           2 * T * 2 * hidden * m

    Args:
        hidden: hidden size.
        num_heads: heads per layer (0 = attention removed).
        intermediate_sizes: FFN dimensions per layer (0 = FFN removed).
        head_size: size of one head.
        batch: batch size.
        seq: padded sequence length.
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
    L = config.num_hidden_layers
    heads = getattr(config, "num_heads", None) or [config.num_attention_heads] * L
    inter = getattr(config, "intermediate_sizes", None) or [config.intermediate_size] * L
    d = (
        getattr(config, "attention_head_size", None)
        or config.hidden_size // config.num_attention_heads
    )
    return encoder_forward_flops(config.hidden_size, heads, inter, d, batch, seq)
