"""An ONNX graph behind a task model's forward, so the torch evaluation and timing code runs it
unchanged (``RunContext.evaluate``, ``cofi_lightning.latency.timing``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput


class OrtModel(nn.Module):
    """An ONNX Runtime session (CPU) with a CoFi task model's call signature and outputs.

    Args:
        path: A graph written by :func:`~cofi_lightning.deploy.onnx_export.export_onnx` (or
            its INT8 quantization).
        threads: Intra-op threads (default: torch's, so both runtimes get the same cores).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no notes about the graph's optimizations
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
