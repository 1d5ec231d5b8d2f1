"""The one formula for the number of encoder parameters, shared by exact and expected counts.

Encoder parameters (what every sparsity is measured on) are all parameters of the Transformer
layers, biases and LayerNorms included; embeddings, the pooler, the task head and the distillation
projection are excluded, as in the paper (Sec. 4.1).

For a layer with hidden size h, n heads of size d and m FFN dimensions::

    attention = 4*h*n*d (Q, K, V, O weights) + 3*n*d (Q, K, V biases) + 3*h (O bias, LayerNorm)
    ffn       = 2*h*m (in/out weights) + m (in bias) + 3*h (out bias, LayerNorm)

where the ``3*h`` terms exist only while the sublayer does. A family changes the coefficients
through its config's ``encoder_param_terms()``. With gate probabilities each argument is an
expectation and, the gates being independent, the result is the exact expected count.
"""

from __future__ import annotations

import torch


def encoder_params(
    hidden: torch.Tensor | float,
    heads: torch.Tensor,
    intermediate: torch.Tensor,
    attn_alive: torch.Tensor,
    ffn_alive: torch.Tensor,
    head_size: int,
    extra_projections: int = 0,
    per_hidden: int = 0,
    head_bias: int = 3,
    attention_per_hidden: float | list[float] = 3,
    ffn_weights: int = 2,
    ffn_bias: int = 1,
    ffn_per_hidden: int = 3,
) -> torch.Tensor:
    """Encoder parameter count (exact for counts, expected for probabilities), a scalar tensor.

    Args:
        hidden: (Expected) hidden dimensions, scalar.
        heads, intermediate: ``[L]`` (expected) heads and FFN dimensions per layer.
        attn_alive, ffn_alive: ``[L]`` 1 (probability) if the sublayer exists.
        extra_projections: Position projections ``e*(h*n*d + n*d)`` (DeBERTa).
        per_hidden: Parameters per hidden dim outside the layers (DeBERTa's relative embeddings).
        head_bias: Bias entries per head dim (Q, K, V biases: 3; none: 0).
        attention_per_hidden: Per-hidden-dim parameters of a live attention besides its
            projections (O bias and LayerNorm: 3), one number or one per layer.
        ffn_weights / ffn_bias / ffn_per_hidden: an FFN dim's weights per hidden dim (2; gated:
            3), its bias entries (1), and a live FFN's per-hidden-dim parameters (3).
    """
    d, e = head_size, extra_projections
    per_layer = torch.as_tensor(attention_per_hidden, dtype=heads.dtype, device=heads.device)
    attention = (4 + e) * d * hidden * heads + (head_bias + e) * d * heads
    attention = attention + per_layer * hidden * attn_alive
    ffn = ffn_weights * hidden * intermediate + ffn_bias * intermediate
    ffn = ffn + ffn_per_hidden * hidden * ffn_alive
    return (attention + ffn).sum() + per_hidden * hidden


def param_terms(config) -> dict[str, int]:
    """A config's extra terms of :func:`encoder_params` (none for BERT and RoBERTa)."""
    terms = getattr(config, "encoder_param_terms", None)
    return terms() if callable(terms) else {}
