"""An ONNX graph behind a task model's forward, so the torch evaluation and timing code runs it
unchanged (``RunContext.evaluate``, ``cofi_lightning.latency.timing``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

#: ONNX Runtime graph fusions turned off: its CPU SkipLayerNormalization kernel (residual add and
#: LayerNorm in one op) measured 6x slower than the Add and LayerNormalization it replaces at
#: [32, 128, 354] on 2 threads (3.5 ms vs 0.6 ms; onnxruntime 1.32), a third of the pruned INT8
#: model's batch-32 time (docs/results/deploy).
SLOW_FUSIONS = ("SkipLayerNormFusion",)


def ort_session(path: str | Path, threads: int | None = None, optimized_path: str | None = None):
    """A CPU ``InferenceSession`` of ``path`` with ``threads`` intra-op threads (default: torch's,
    so both runtimes get the same cores) and :data:`SLOW_FUSIONS` off; ``optimized_path``: also
    write the graph as optimized (to inspect it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no notes about the graph's optimizations
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=SLOW_FUSIONS
    )


class OrtModel(nn.Module):
    """An ONNX Runtime session (:func:`ort_session`) with a CoFi task model's call signature and
    outputs.

    Args:
        path: A graph written by :func:`~cofi_lightning.deploy.onnx_export.export_onnx` (or
            its INT8 quantization).
        threads: Intra-op threads (default: torch's).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(path, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.eval()  # an inference graph: no dropout in it, whatever the module's mode

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput | QuestionAnsweringModelOutput:
        given = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids)
            if attention_mask is None
            else attention_mask,
            "token_type_ids": torch.zeros_like(input_ids)
            if token_type_ids is None
            else token_type_ids,
        }
        feed = {name: given[name].cpu().numpy().astype(np.int64) for name in self.inputs}
        out = dict(zip(self.outputs, self.session.run(None, feed), strict=True))
        if "start_logits" in out:
            return QuestionAnsweringModelOutput(
                start_logits=torch.from_numpy(out["start_logits"]),
                end_logits=torch.from_numpy(out["end_logits"]),
            )
        return SequenceClassifierOutput(logits=torch.from_numpy(out["logits"]))
