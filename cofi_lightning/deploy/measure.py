"""One export through each runtime: its files, validation metrics, size on disk and latency.

The runtimes are ``torch-fp32`` (the export's ``model.safetensors``), ``ort-fp32``
(``model.onnx``) and ``ort-int8`` (``model.int8.onnx``); their metrics come from the torch
evaluation's own code, their latency from the benchmark's timing protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cofi_lightning.deploy.onnx_export import INT8_FILE, ONNX_FILE, export_onnx, quantize_int8
from cofi_lightning.deploy.runtime import OrtModel
from cofi_lightning.latency.timing import make_inputs, time_models
from cofi_lightning.run.ranks import barrier, is_global_zero
from cofi_lightning.run.results import RuntimeResult

TORCH = "torch-fp32"
#: ``{runtime: its file in an export directory}``.
FILES = {TORCH: "model.safetensors", "ort-fp32": ONNX_FILE, "ort-int8": INT8_FILE}


def runtimes(quantize: str | None) -> list[str]:
    """The runtimes of ``export.onnx=true`` with ``export.quantize=quantize``."""
    return [TORCH, "ort-fp32", *(["ort-int8"] if quantize == "int8" else [])]


def write_onnx(model: nn.Module, export_dir: Path, quantize: str | None) -> None:
    """Write ``model.onnx`` (and with ``quantize=int8`` ``model.int8.onnx``) into ``export_dir``;
    a quantized file of an earlier call is removed when none is asked for."""
    onnx_path = export_onnx(model, export_dir / ONNX_FILE)
    int8 = export_dir / INT8_FILE
    if quantize == "int8":
        quantize_int8(onnx_path, int8)
    else:
        int8.unlink(missing_ok=True)


def runtime_models(model: nn.Module, export_dir: Path, names: list[str]) -> dict[str, nn.Module]:
    """``{runtime: model}``: ``model`` itself for torch, an ONNX Runtime session for the others."""
    return {
        name: model if name == TORCH else OrtModel(Path(export_dir) / FILES[name]) for name in names
    }


def size_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


def measure(
    models: dict[str, nn.Module],
    export_dir: Path,
    metrics: dict[str, dict[str, float]],
    *,
    batch: int,
    seq: int,
    warmup: int = 2,
    rounds: int = 7,
) -> list[RuntimeResult]:
    """Time every runtime on the same random ``[batch, seq]`` inputs (interleaved rounds, the
    median) and record it with its ``metrics`` and its file's size."""
    vocab = min(m.config.vocab_size for m in models.values() if hasattr(m, "config"))
    inputs = make_inputs(batch, seq, vocab, torch.device("cpu"))
    timings = time_models(models, inputs, warmup, rounds, interleave=False)
    return [
        RuntimeResult(
            runtime=name,
            file=FILES[name],
            metrics=metrics[name],
            size_mb=size_mb(Path(export_dir) / FILES[name]),
            latency_ms=timings[name].median_ms,
            batch=batch,
            seq=seq,
            threads=torch.get_num_threads(),
        )
        for name in models
    ]


def deploy_export(
    model: nn.Module,
    export_dir: Path,
    quantize: str | None,
    evaluate: Callable[[nn.Module], dict[str, float]],
    torch_metrics: dict[str, float],
    seq: int,
) -> list[RuntimeResult]:
    """Write an export's ONNX files (rank 0), re-evaluate them with ``evaluate`` (the run's
    ``RunContext.evaluate``) and time every runtime at batch 1 (serving) x ``seq`` tokens.

    Args:
        model: The export as loaded (torch fp32, eval mode).
        torch_metrics: Its metrics, already measured.
    """
    export_dir = Path(export_dir)
    if is_global_zero():
        write_onnx(model, export_dir, quantize)
    barrier()
    models = runtime_models(model.eval(), export_dir, runtimes(quantize))
    metrics = {name: torch_metrics if name == TORCH else evaluate(m) for name, m in models.items()}
    for m in models.values():  # evaluate() hands its model back in training mode
        m.eval()
    return measure(models, export_dir, metrics, batch=1, seq=seq)
