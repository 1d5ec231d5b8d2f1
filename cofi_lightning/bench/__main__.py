"""Command line of the latency benchmark; see ``cofi_lightning/bench/__init__.py`` for the protocol.

Usage::

    python -m cofi_lightning.bench run=<run_dir> [key=value ...]
    python -m cofi_lightning.bench pruned=<model dir> [baseline=<dir or hub name>] [key=value ...]
    python -m cofi_lightning.bench synthetic=s95 [key=value ...]

Keys (``key=value``, as in the other ``python -m cofi_lightning...`` commands):
``device=cpu|cuda``, ``dtype=fp32|bf16``, ``batch=128``, ``seq=128`` (384 for SQuAD / QA models),
``warmup`` and ``rounds`` (2 and 7 on CPU, 10 and 50 on CUDA), ``threads`` (CPU threads; default:
torch's), ``optimize=false`` (time both through ``bench/fast.py``), ``compile=false`` (time both
through ``torch.compile``), ``out=<json>`` (default ``<run_dir>/speed_<device>_<dtype>.json``, or
``speed_<device>_<dtype>.json`` in the working directory).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from cofi_lightning.bench.compare import compare, format_table
from cofi_lightning.bench.sources import (
    BenchError,
    Sources,
    discover,
    load_pair,
    synthetic_pair,
)
from cofi_lightning.bench.timing import resolve_device, resolve_dtype
from cofi_lightning.modeling import CoFiBertForQuestionAnswering

USAGE = (
    "usage: python -m cofi_lightning.bench {run=<run_dir> | pruned=<dir> [baseline=<dir|hub>] | "
    "synthetic=s95} [device=cpu|cuda] [dtype=fp32|bf16] [batch=128] [seq=128] [warmup=..] "
    "[rounds=..] [threads=..] [optimize=false] [compile=false] [out=<json>]"
)
KEYS = (
    "run",
    "pruned",
    "baseline",
    "synthetic",
    "device",
    "dtype",
    "batch",
    "seq",
    "warmup",
    "rounds",
    "threads",
    "optimize",
    "compile",
    "out",
)


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``key=value`` arguments -> settings, with every unknown key or bad value named.

    Raises:
        BenchError: malformed argument, unknown key, or an impossible combination.
    """
    try:
        args = OmegaConf.to_container(OmegaConf.from_dotlist(argv))
    except Exception as err:  # noqa: BLE001 - OmegaConf raises several types for bad syntax
        raise BenchError(f"arguments must be key=value ({err})\n{USAGE}") from err
    unknown = sorted(set(args) - set(KEYS))
    if unknown:
        raise BenchError(f"unknown key(s) {unknown}; known: {', '.join(KEYS)}\n{USAGE}")
    synthetic = args.get("synthetic", False)
    if synthetic not in (False, True, "s95"):  # the only synthetic structure so far
        raise BenchError(f"synthetic must be s95 (or true), got {synthetic!r}")
    args["synthetic"] = synthetic is not False
    if args["synthetic"] and any(args.get(k) for k in ("run", "pruned", "baseline")):
        raise BenchError("synthetic=s95 builds both models; drop run=, pruned= and baseline=")
    if not args["synthetic"] and not (args.get("run") or args.get("pruned")):
        raise BenchError(USAGE)
    cuda = str(args.get("device", "cpu")).startswith("cuda")
    settings = {
        "device": str(args.get("device", "cpu")),
        "dtype": str(args.get("dtype", "fp32")),
        "batch": args.get("batch", 128),
        "seq": args.get("seq"),
        "warmup": args.get("warmup", 10 if cuda else 2),
        "rounds": args.get("rounds", 50 if cuda else 7),
        "threads": args.get("threads"),
    }
    for key in ("batch", "seq", "warmup", "rounds", "threads"):
        value = settings[key]
        low = 0 if key == "warmup" else 1
        if value is not None and (not isinstance(value, int) or value < low):
            raise BenchError(f"{key} must be an integer >= {low}, got {value!r}")
    for key in ("optimize", "compile"):
        value = args.get(key, False)
        if not isinstance(value, bool):
            raise BenchError(f"{key} must be true or false, got {value!r}")
        settings[key] = value
    for key in ("run", "pruned", "baseline", "out"):
        settings[key] = None if args.get(key) is None else str(args[key])
    settings["synthetic"] = args["synthetic"]
    return settings


def run(settings: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Load (or build), time, write the JSON; returns ``(report, json path)``.

    Raises:
        BenchError: anything the user can fix (paths, device, values).
    """
    resolve_device(settings["device"])  # fail before minutes of loading, not after
    resolve_dtype(settings["dtype"])
    if settings["threads"] is not None:
        torch.set_num_threads(settings["threads"])
    run_dir = None
    if settings["synthetic"]:
        pruned, baseline = synthetic_pair()
        names = {"pruned": "synthetic s95 (random weights)", "baseline": "synthetic BERT-base"}
        task = None
    else:
        found: Sources = discover(settings["pruned"], settings["baseline"], settings["run"])
        pruned, baseline = load_pair(found)
        names = {"pruned": found.pruned, "baseline": found.baseline}
        task = found.task
        run_dir = Path(found.run_dir) if found.run_dir else None
    seq = settings["seq"]
    if seq is None:  # SQuAD windows are 384 tokens, GLUE inputs 128
        qa = task == "squad" or isinstance(pruned, CoFiBertForQuestionAnswering)
        seq = 384 if qa else 128
    report = compare(
        pruned,
        baseline,
        device=settings["device"],
        dtype=settings["dtype"],
        batch=settings["batch"],
        seq=seq,
        warmup=settings["warmup"],
        rounds=settings["rounds"],
        optimize=settings["optimize"],
        compile_model=settings["compile"],
        sources=names,
    )
    report["task"] = task
    out = settings["out"]
    if out is None:
        name = f"speed_{report['device']}_{report['dtype']}.json"
        out = run_dir / name if run_dir is not None else Path(name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report, out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # per-file loading bars would bury the table
    hf_logging.set_verbosity_error()  # a baseline's fresh task head is expected, not news
    try:
        report, out = run(parse_args(sys.argv[1:] if argv is None else argv))
    except BenchError as err:
        raise SystemExit(f"error: {err}") from None
    finally:  # main() also runs in-process (tests): leave transformers' logging as found
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    print(format_table(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
