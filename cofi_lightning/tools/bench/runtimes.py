"""The bench's ``runtime=`` table: the dense model in PyTorch fp32 against a pruned export through
PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime INT8 (files of ``export.onnx`` /
``python -m cofi_lightning.deploy``), timed on the same inputs with the benchmark's protocol.

Each row has its latency, its speedup over dense PyTorch, its size on disk and its validation
metric as the run recorded it (``results.json``: the export's runtimes; the dense row shows the
fine-tuned teacher's, the dense model of the same shape, and its fp32 weights' size).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from cofi_lightning.latency.timing import BenchError, device_name, make_inputs, time_models
from cofi_lightning.tools.bench.sources import Sources

#: The bench's runtime names -> the runtime names of ``results.json`` (``RuntimeResult.runtime``).
RUNTIMES = {"torch": "torch-fp32", "ort": "ort-fp32", "ort-int8": "ort-int8"}
DENSE = "dense torch-fp32"


def runtime_list(value: str) -> list[str]:
    """An argparse ``type``: ``torch,ort,ort-int8`` -> ``["torch", "ort", "ort-int8"]``."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or any(name not in RUNTIMES for name in names):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of {', '.join(RUNTIMES)}, got {value!r}"
        )
    return names


def _recorded(sources: Sources) -> tuple[str | None, dict[str, float | None]]:
    """``(main metric, {row: its recorded value})`` from the run's ``results.json``."""
    from cofi_lightning.run.results import result_points

    results = Path(sources.run_dir or "") / "results.json"
    if not sources.run_dir or not results.is_file():
        return None, {}
    data = json.loads(results.read_text())
    main = data.get("main_metric")
    for point, record in result_points(data):
        if point.export_dir(sources.run_dir).resolve() == Path(sources.pruned).resolve():
            runtimes = record.get("runtimes") or []
            values = {f"pruned {r['runtime']}": r["metrics"].get(main) for r in runtimes}
            values.setdefault("pruned torch-fp32", (record.get("pruned") or {}).get(main))
            return main, {DENSE: data.get("teacher", {}).get(main), **values}
    return main, {}


def _weights_mb(model: torch.nn.Module) -> float:
    """The weights' bytes as timed (fp32; a checkpoint on disk may be stored in half precision)."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6


def compare_runtimes(
    pruned: torch.nn.Module,
    dense: torch.nn.Module,
    sources: Sources,
    runtimes: list[str],
    *,
    batch: int,
    seq: int,
    warmup: int,
    rounds: int,
) -> dict[str, Any]:
    """Time ``dense`` in PyTorch and the ``pruned`` export (as loaded by ``load_pair``) through
    each of ``runtimes`` (CPU; fp32 and INT8 as stored) on the same ``[batch, seq]`` inputs; the
    report with one row per model."""
    from cofi_lightning.deploy.measure import FILES, runtime_models, size_mb

    export = Path(sources.pruned)
    names = [RUNTIMES[r] for r in runtimes]
    missing = [FILES[n] for n in names if not (export / FILES[n]).is_file()]
    if missing:
        raise BenchError(
            f"{export} has no {', '.join(missing)}: write them with python -m "
            f"cofi_lightning.deploy run=<run dir> (or train with export.onnx=true "
            "export.quantize=int8)"
        )
    models = {DENSE: dense.eval()}
    models.update({f"pruned {n}": m for n, m in runtime_models(pruned, export, names).items()})
    sizes = {DENSE: _weights_mb(dense)}
    sizes.update({f"pruned {n}": size_mb(export / FILES[n]) for n in names})
    vocab = min(dense.config.vocab_size, pruned.config.vocab_size)
    inputs = make_inputs(batch, seq, vocab, torch.device("cpu"))
    timings = time_models(models, inputs, warmup, rounds, interleave=False)
    main, metrics = _recorded(sources)
    dense_ms = timings[DENSE].median_ms
    rows = [
        {
            "model": name,
            "source": sources.baseline if name == DENSE else str(export),
            "latency_ms": timings[name].median_ms,
            "speedup": dense_ms / timings[name].median_ms,
            "size_mb": sizes[name],
            "metric": metrics.get(name),
        }
        for name in models
    ]
    return {
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "batch": batch,
        "seq": seq,
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "rounds": rounds,
        "torch": torch.__version__,
        "main_metric": main,
        "rows": rows,
    }


def format_runtime_table(report: dict[str, Any]) -> str:
    """The runtime report as a text table (the CLI's output)."""
    metric = report["main_metric"] or "metric"
    lines = [
        f"{report['device_name']} (cpu, threads={report['threads']})  batch {report['batch']}  "
        f"seq {report['seq']}  median of {report['rounds']} rounds (+{report['warmup']} warm-up)",
        f"{'model':<18} {'latency ms':>11} {'speedup':>8} {'size MB':>9} {metric:>10}",
    ]
    for r in report["rows"]:
        value = "-" if r["metric"] is None else f"{r['metric']:.2f}"
        lines.append(
            f"{r['model']:<18} {r['latency_ms']:>11.2f} {r['speedup']:>7.2f}x "
            f"{r['size_mb']:>9.2f} {value:>10}"
        )
    lines.append(f"(dense row: {metric} of the fine-tuned teacher, the dense model of this shape)")
    return "\n".join(lines)
