"""Latency of a pruned model against its unpruned counterpart (``python -m
cofi_lightning.tools.bench``).

The protocol follows CoFi's speedup measurement: forward passes only, a fixed batch (default 128)
padded to a fixed sequence length (128; 384 for SQuAD / QA models), no gradients, eval mode, the
same inputs for both models, warm-up rounds discarded and the median of repeated rounds, the two
models' rounds interleaved. On CUDA each forward is timed with CUDA events after a synchronize, in
fp32 or bf16; on CPU with the wall clock, and the thread count is reported. The report also gives
each model's encoder parameters and sparsity (one formula: ``num_encoder_params``) and the
FLOP-ideal speedup (``cofi_lightning.latency.flops.config_forward_flops``, encoder matmuls only)
with the fraction of it the measured speedup reaches.

Files: ``sources.py`` (run dirs, model dirs, the synthetic s95 pair),
``cofi_lightning.latency.timing`` (the protocol), ``compare.py`` (the report and its table),
``__main__.py`` (the command).
"""

from cofi_lightning.latency.timing import make_inputs, time_models
from cofi_lightning.tools.bench.compare import compare, format_table
from cofi_lightning.tools.bench.sources import (
    BenchError,
    Sources,
    discover,
    load_pair,
    synthetic_pair,
)

__all__ = [
    "BenchError",
    "Sources",
    "compare",
    "discover",
    "format_table",
    "load_pair",
    "make_inputs",
    "synthetic_pair",
    "time_models",
]
