"""Pruned vs baseline: latencies, speedup, encoder parameters, sparsity and the FLOP-ideal speedup.

This file owns the JSON one benchmark writes and its table. Parameters and FLOPs are counted on the
models as loaded, before any compilation.
"""

from __future__ import annotations

from typing import Any

import torch

from cofi_lightning.latency.flops import config_forward_flops
from cofi_lightning.latency.timing import (
    BenchError,
    device_name,
    make_inputs,
    resolve_device,
    resolve_dtype,
    time_models,
)
from cofi_lightning.modeling import CoFiBertPreTrainedModel
from cofi_lightning.modeling.structure import Structure

ROLES = ("baseline", "pruned")


def _prepare(model, device, dtype, compile_model: bool):
    model = model.to(device=device, dtype=dtype).eval()
    return torch.compile(model) if compile_model else model


def compare(
    pruned: CoFiBertPreTrainedModel,
    baseline: CoFiBertPreTrainedModel,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch: int = 128,
    seq: int = 128,
    warmup: int = 2,
    rounds: int = 7,
    compile_model: bool = False,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Time both models (moved and cast in place) on the same inputs, ``seq`` positions all
    attended, latencies the median of ``rounds``: the report holds the settings, each model's
    latency, parameters, sparsity, FLOPs and structure, the ``speedup``, the FLOP-ideal one and
    the fraction of it achieved. ``sources`` (where each model came from) are copied into it."""
    dev, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    if type(pruned) is not type(baseline):
        raise BenchError(
            f"pruned is a {type(pruned).__name__}, baseline a {type(baseline).__name__}: "
            "both must be the same task model"
        )
    models = {"baseline": baseline, "pruned": pruned}
    for role, model in models.items():
        limit = model.config.max_position_embeddings
        if seq > limit:
            raise BenchError(f"seq={seq} exceeds the {role} model's {limit} positions")
    if compile_model and warmup < 1:
        raise BenchError("compile=true needs warmup >= 1 (the first call compiles)")

    base_params = baseline.num_encoder_params()
    counts = {
        role: {
            "encoder_params": model.num_encoder_params(),
            "sparsity": 1.0 - model.num_encoder_params() / base_params,
            "encoder_flops": config_forward_flops(model.config, batch, seq),
            "structure": Structure.from_config(model.config).as_dict(),
        }
        for role, model in models.items()
    }
    vocab = min(m.config.vocab_size for m in models.values())
    inputs = make_inputs(batch, seq, vocab, dev)
    timed = {r: _prepare(m, dev, torch_dtype, compile_model) for r, m in models.items()}
    timings = time_models(timed, inputs, warmup, rounds)

    report: dict[str, Any] = {
        "device": dev.type,
        "device_name": device_name(dev),
        "dtype": dtype,
        "batch": batch,
        "seq": seq,
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "rounds": rounds,
        "compile": compile_model,
        "torch": torch.__version__,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),  # TF32 on GPU or not
        "model_class": type(pruned).__name__,
    }
    for role in ROLES:
        t = timings[role]
        report[role] = {
            "source": (sources or {}).get(role),
            "latency_ms": t.median_ms,
            "latency_ms_rounds": t.rounds_ms,
            "page_faults_per_forward": t.page_faults_per_forward,
            **counts[role],
        }
    speedup = report["baseline"]["latency_ms"] / report["pruned"]["latency_ms"]
    ideal = counts["baseline"]["encoder_flops"] / counts["pruned"]["encoder_flops"]
    report["speedup"] = speedup
    report["flop_ideal_speedup"] = ideal
    report["achieved_fraction_of_ideal"] = speedup / ideal
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a small text table (the CLI's output)."""
    threads = f", threads={report['threads']}" if report["device"] == "cpu" else ""
    compiled = "  [compile]" if report["compile"] else ""
    lines = [
        f"{report['device_name']} ({report['device']}{threads})  dtype {report['dtype']}  "
        f"batch {report['batch']}  seq {report['seq']}  median of {report['rounds']} rounds "
        f"(+{report['warmup']} warm-up){compiled}",
        f"{'model':<9} {'encoder params':>15} {'sparsity':>9} {'GFLOPs':>9} {'latency ms':>11}  "
        "source",
    ]
    for role in ROLES:
        r = report[role]
        lines.append(
            f"{role:<9} {r['encoder_params']:>15,} {r['sparsity']:>9.2%} "
            f"{r['encoder_flops'] / 1e9:>9.3g} {r['latency_ms']:>11.1f}  {r['source'] or ''}"
        )
    lines.append(
        f"speedup {report['speedup']:.2f}x   FLOP-ideal {report['flop_ideal_speedup']:.2f}x   "
        f"achieved {report['achieved_fraction_of_ideal']:.1%} of ideal"
    )
    return "\n".join(lines)
