"""The timing protocol (CoFi's): fixed batch and padded length, inference mode, warm-up rounds
discarded, the median of interleaved rounds; wall clock on CPU, CUDA events on a GPU."""

from __future__ import annotations

import gc
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


class BenchError(ValueError):
    """A benchmark input is missing or unusable; the message says which and what was expected."""


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:i]``, checked now so a GPU-only request fails before any loading."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA (a CPU-only build)"
            raise BenchError(
                f"device={name} but torch.cuda.is_available() is False (torch {torch.__version__} "
                f"built with {built}); run with device=cpu or on a machine with a GPU"
            )
        return torch.device(name)
    raise BenchError(f"device must be 'cpu' or 'cuda', got {name!r}")


def resolve_dtype(name: str) -> torch.dtype:
    """``fp32`` or ``bf16``."""
    if name not in DTYPES:
        raise BenchError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name, for the report."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def make_inputs(
    batch: int, seq: int, vocab_size: int, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random ``[batch, seq]`` token ids with the attention mask and token types a tokenizer would
    give, so every model takes its masked attention path."""
    gen = torch.Generator().manual_seed(seed)
    low = 1000 if vocab_size > 2000 else 1  # above BERT's special and unused tokens
    ids = torch.randint(low, vocab_size, (batch, seq), generator=gen)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    return {k: v.to(device) for k, v in inputs.items()}


@dataclass
class Timing:
    """Latencies of one model: each timed round's ms and, on CPU, its minor page faults (fresh
    memory the allocator had to map)."""

    rounds_ms: list[float] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rounds_ms)

    @property
    def page_faults_per_forward(self) -> float | None:
        return statistics.median(self.page_faults) if self.page_faults else None


def _forward_ms(model: nn.Module, inputs: dict, cuda: bool) -> tuple[float, int | None]:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()  # nothing of the previous model still running
        start.record()
        model(**inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end), None
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tic = time.perf_counter()
    model(**inputs)
    elapsed = (time.perf_counter() - tic) * 1e3
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def time_models(
    models: dict[str, nn.Module],
    inputs: dict[str, torch.Tensor],
    warmup: int,
    rounds: int,
    *,
    interleave: bool = True,
) -> dict[str, Timing]:
    """Time one forward of every model (in eval mode) per round, after ``warmup`` rounds.

    Interleaving spreads drift (clock boost, other load) over all models alike, and the order
    alternates each round so no model always runs with the other's data in cache. Models of
    different runtimes must not be interleaved (``interleave=False``): each runtime keeps its own
    worker threads spinning for a while after a call (ONNX Runtime's pool, PyTorch's OpenMP), and
    they take the cores from the other runtime's next forward (measured on 2 cores: PyTorch 3.7 ms
    alone, 8.2 ms interleaved with ONNX Runtime). Then each model runs in blocks of its own
    (``warmup`` discarded forwards, then its rounds), in two passes of opposite order that split
    the rounds.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got {rounds=}, {warmup=}")
    training = [name for name, m in models.items() if m.training]
    if training:
        raise ValueError(f"models must be in eval mode (dropout off); in training mode: {training}")
    cuda = next(iter(inputs.values())).device.type == "cuda"
    timings = {name: Timing() for name in models}
    names = list(models)
    if interleave:
        schedule = [(r >= warmup, n) for r in range(warmup + rounds) for n in _order(names, r)]
    else:
        first = (rounds + 1) // 2
        schedule = [
            (i >= warmup, name)
            for part, order in ((first, names), (rounds - first, names[::-1]))
            for name in (order if part else [])
            for i in range(warmup + part)
        ]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does: a collection inside one model's forward is noise
    try:
        with torch.inference_mode():
            for timed, name in schedule:
                ms, faults = _forward_ms(models[name], inputs, cuda)
                if timed:
                    timings[name].rounds_ms.append(ms)
                    if faults is not None:
                        timings[name].page_faults.append(faults)
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def _order(names: list[str], round_: int) -> list[str]:
    return names if round_ % 2 == 0 else names[::-1]
