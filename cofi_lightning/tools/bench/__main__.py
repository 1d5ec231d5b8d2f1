"""Command line of the latency benchmark (``python -m cofi_lightning.tools.bench --help``).

The table is printed before the JSON is written, so a measurement whose report cannot be written
(read-only storage) is not lost. Bad arguments exit with status 2 (argparse), problems with the
models or the report's path with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from cofi_lightning.config import ConfigError
from cofi_lightning.latency.timing import DTYPES, resolve_device, resolve_dtype
from cofi_lightning.run.preflight import check_deploy_extra
from cofi_lightning.tools.bench.compare import compare, format_table
from cofi_lightning.tools.bench.runtimes import compare_runtimes, format_runtime_table, runtime_list
from cofi_lightning.tools.bench.sources import BenchError, discover, load_pair, synthetic_pair
from cofi_lightning.tools.cli import add_flag, boolean, int_at_least, parse_key_values

EXAMPLES = """\
examples:
  python -m cofi_lightning.tools.bench run=outputs/demo/<run>              # a finished training run
  python -m cofi_lightning.tools.bench run=outputs/demo/<run> runtime=torch,ort,ort-int8 batch=1
  python -m cofi_lightning.tools.bench pruned=<dir> baseline=<dir or hub name> device=cuda
  dtype=bf16 python -m cofi_lightning.tools.bench synthetic=s95 batch=32 threads=2    # BERT-base at
  95% sparsity

Every --key value may also be written key=value, as in train.py overrides.
"""
#: Where reports go without ``out=`` and without a run dir (beside train.py's outputs).
DEFAULT_OUT_DIR = Path("outputs") / "bench"


def _synthetic(value: str) -> bool:
    """``s95`` (or ``true``) -> True, ``false`` -> False: the only synthetic structure so far."""
    if value == "s95":
        return True
    try:
        return boolean(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be s95, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.tools.bench",
        description="Time a pruned model against its unpruned counterpart (forward passes only,\n"
        "CoFi's speedup protocol), print the table and write the report as JSON.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    models = parser.add_argument_group("models (give run, pruned or synthetic)")
    models.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="a finished training run: its exported pruned model against the run's "
        "model.pretrained (task and sequence length from the run)",
    )
    models.add_argument(
        "--pruned",
        metavar="DIR",
        help="an exported pruned model dir (or a run dir holding one)",
    )
    models.add_argument(
        "--baseline",
        metavar="DIR_OR_HUB",
        help="the unpruned model, a local dir or a hub name (default: the run's model.pretrained)",
    )
    models.add_argument(
        "--synthetic",
        nargs="?",
        const=True,
        default=False,
        type=_synthetic,
        metavar="s95",
        help="build BERT-base and a 95%% sparse structure with random weights (no files)",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:<i> (default: %(default)s)"
    )
    timing.add_argument(
        "--dtype",
        default="fp32",
        choices=sorted(DTYPES),
        help="precision of both models (default: %(default)s)",
    )
    timing.add_argument(
        "--batch", type=int_at_least(1), default=128, help="batch size (default: %(default)s)"
    )
    timing.add_argument(
        "--seq",
        type=int_at_least(1),
        help="padded sequence length in tokens (default: 384 for SQuAD / QA models, else 128)",
    )
    timing.add_argument(
        "--warmup",
        type=int_at_least(0),
        help="discarded rounds per model (default: 2 on CPU, 10 on CUDA)",
    )
    timing.add_argument(
        "--rounds",
        type=int_at_least(1),
        help="timed rounds per model; the median is reported (default: 7 on CPU, 50 on CUDA)",
    )
    timing.add_argument("--threads", type=int_at_least(1), help="CPU threads (default: torch's)")
    add_flag(timing, "--compile", "time both models through torch.compile (default: false)")
    timing.add_argument(
        "--runtime",
        type=runtime_list,
        metavar="LIST",
        help="instead: one table of dense PyTorch fp32 and the pruned export through each of "
        "torch, ort (ONNX Runtime fp32), ort-int8 (comma-separated; CPU, needs the deploy extra)",
    )
    parser.add_argument(
        "--out",
        metavar="JSON",
        help="report path (default: <run_dir>/speed_<device>_<dtype>.json, or "
        f"{DEFAULT_OUT_DIR}/speed_<device>_<dtype>.json without a run)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line arguments -> settings for :func:`measure`, device-dependent defaults filled."""
    parser = build_parser()
    args = parse_key_values(parser, argv)
    if args.synthetic and any((args.run, args.pruned, args.baseline)):
        parser.error("synthetic=s95 builds both models; drop run=, pruned= and baseline=")
    if not args.synthetic and not (args.run or args.pruned):
        parser.error("give the models: run=<run_dir>, pruned=<dir> [baseline=...] or synthetic=s95")
    if args.runtime and (args.synthetic or args.device != "cpu" or args.compile):
        parser.error(
            "runtime= times a run's export files on CPU: drop synthetic=, device=, compile="
        )
    if args.runtime and args.dtype != "fp32":
        parser.error("runtime= compares the stored precisions (fp32, INT8): drop dtype=")
    cuda = args.device.startswith("cuda")
    if args.warmup is None:
        args.warmup = 10 if cuda else 2
    if args.rounds is None:
        args.rounds = 50 if cuda else 7
    return vars(args)


def measure(settings: dict[str, Any]) -> tuple[dict[str, Any], Path, Path | None]:
    """Load (or build) and time both models: the report (:func:`compare`'s, plus ``task``), its
    JSON path and the run measured; nothing is written."""
    resolve_device(settings["device"])  # fail before minutes of loading, not after
    if any(r.startswith("ort") for r in settings.get("runtime") or ()):
        try:
            check_deploy_extra("runtime=" + ",".join(settings["runtime"]))
        except ConfigError as err:
            raise BenchError(str(err)) from None
    resolve_dtype(settings["dtype"])
    if settings["threads"] is not None:
        torch.set_num_threads(settings["threads"])
    run_dir = None
    if settings["synthetic"]:
        pruned, baseline = synthetic_pair()
        names = {"pruned": "synthetic s95 (random weights)", "baseline": "synthetic BERT-base"}
        task = None
    else:
        found = discover(settings["pruned"], settings["baseline"], settings["run"])
        pruned, baseline = load_pair(found)
        names = {"pruned": found.pruned, "baseline": found.baseline}
        task = found.task
        run_dir = Path(found.run_dir) if found.run_dir else None
    seq = settings["seq"]
    if seq is None:  # SQuAD windows are 384 tokens, GLUE inputs 128
        qa = task == "squad" or "QuestionAnswering" in type(pruned).__name__
        seq = 384 if qa else 128
    timing = {k: settings[k] for k in ("batch", "warmup", "rounds")}
    if settings.get("runtime"):
        report = compare_runtimes(pruned, baseline, found, settings["runtime"], seq=seq, **timing)
        name = f"runtimes_cpu_b{report['batch']}{settings.get('suffix', '')}.json"
    else:
        report = compare(
            pruned,
            baseline,
            device=settings["device"],
            dtype=settings["dtype"],
            seq=seq,
            compile_model=settings["compile"],
            sources=names,
            **timing,
        )
        name = f"speed_{report['device']}_{report['dtype']}{settings.get('suffix', '')}.json"
    report["task"] = task
    out = settings["out"]
    if out is None:
        out = (run_dir if run_dir is not None else DEFAULT_OUT_DIR) / name
    return report, Path(out), run_dir


def save(report: dict[str, Any], out: Path, run_dir: Path | None, several: bool) -> None:
    """Write the JSON report and refresh the run's model card with the measured speedup
    (``several``: one of a sparsity path's exports, which ``out=`` cannot name)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        if run_dir is not None:
            from cofi_lightning.run.model_card import refresh_card

            refresh_card(run_dir)
    except OSError as err:
        where = (
            "copy the run to writable storage and measure the copy"
            if several
            else f"write it elsewhere with out={DEFAULT_OUT_DIR / out.name}"
        )
        raise BenchError(
            f"cannot write {err.filename or out} ({err.strerror or err}); the measurement is "
            f"printed above: {where}"
        ) from None


def run_all(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings of each measurement: one, or for ``run=<dir>`` of a sparsity path one per
    export (against the baseline, into ``speed_<device>_<dtype>_<t>.json``)."""
    from cofi_lightning.run.results import result_points

    if settings["synthetic"] or not settings["run"] or settings["pruned"]:
        return [settings]
    run_dir = Path(settings["run"])
    if not (run_dir / "results.json").is_file():
        return [settings]
    try:
        data = json.loads((run_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"run={settings['run']}: unreadable results.json ({err})") from None
    points = [point for point, _ in result_points(data)]
    if len(points) < 2:
        return [settings]
    if settings["out"]:
        raise BenchError("out= names one file but the run has several exports; leave it out")
    return [{**settings, "pruned": str(p.export_dir(run_dir)), "suffix": p.suffix} for p in points]


def main(argv: list[str] | None = None) -> None:
    from transformers.utils import logging as hf_logging

    settings = parse_args(argv)  # argparse exits (status 2, or 0 for --help) before any loading
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # per-file loading bars would bury the table
    hf_logging.set_verbosity_error()  # a baseline's fresh task head is expected, not news
    try:
        for each in run_all(settings):
            report, out, run_dir = measure(each)
            table = format_runtime_table if "rows" in report else format_table
            print(table(report))  # first: nothing measured is lost
            sys.stdout.flush()
            save(report, out, run_dir, several="suffix" in each)
            print(f"wrote {out}")
    except BenchError as err:
        raise SystemExit(f"error: {err}") from None
    finally:  # main() also runs in-process (tests): leave transformers' logging as found
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


if __name__ == "__main__":
    main()
