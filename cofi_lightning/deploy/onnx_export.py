"""An export as ONNX files: ``model.onnx`` (fp32, dynamic batch and length) and its dynamic INT8
quantization ``model.int8.onnx``.

The graph comes from torch's ``torch.export``-based exporter (``dynamo=True``, the default since
torch 2.9; it needs ``onnxscript``): on torch 2.13 it exports every family's pruned structures
(uneven heads, removed sublayers, reduced hidden size) with outputs equal to torch's at any batch
and length (tests/modeling/test_onnx_export.py). The TorchScript exporter (``dynamo=False``) does
too, three times faster, but torch 2.13 deprecates it with a warning on every call. A compact
model has no masks: the graph is its plain dense structure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from cofi_lightning.training.parts import logits

#: Graph inputs, in order (a family without token types still takes them, as its forward does).
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPSET = 18  # the opset of torch 2.13's ONNX function library (its default)


class _Logits(nn.Module):
    """A task model's forward on the graph's inputs, returning its logits as plain tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return logits(out)


def export_onnx(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (a compact CoFi task model) as an fp32 ONNX graph with dynamic batch and
    sequence axes; outputs ``logits`` ``[B, C]``, or ``start_logits`` / ``end_logits`` ``[B, S]``.
    """
    path = Path(path)
    wrapped = _Logits(model).eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)  # any tokens: only shapes are traced
    sample = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    with torch.no_grad():
        qa = isinstance(wrapped(*sample), tuple)
    outputs = ["start_logits", "end_logits"] if qa else ["logits"]
    axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    with _quiet_exporter():
        torch.onnx.export(
            wrapped,
            sample,
            str(path),
            dynamo=True,
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_shapes=tuple(axes for _ in INPUTS),
            opset_version=OPSET,
            external_data=False,  # one file (ONNX's protobuf limit, 2 GB, is far above ours)
            verbose=False,
        )
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress notes and its skipped torchvision operators off (logged at
    warning level on every export; the export's outcome is checked, not read from them)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            yield
    finally:
        logger.setLevel(level)


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic INT8 quantization of an ONNX graph (weights stored as int8, activations quantized
    per batch at run time) with ONNX Runtime's ``quantize_dynamic``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)
