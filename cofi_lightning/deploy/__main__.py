"""``python -m cofi_lightning.deploy run=<run dir>``: what ``export.onnx=true`` does, for a run
that is already exported.

For every export of the run it writes ``model.onnx`` (and ``model.int8.onnx``), evaluates them on
the task's validation set, times every runtime, then updates the export's ``DONE.json``,
``results.json`` and the model card. A run logged to W&B gets a new version of each export's model
artifact, ONNX files included, in the job's own W&B run (resumed by its id). Problems exit with one
line and status 1.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

from omegaconf import OmegaConf

from cofi_lightning.config import ConfigError, TrainConfig, load_config
from cofi_lightning.run.checkpoints import write_text_atomically
from cofi_lightning.run.preflight import check_deploy_extra
from cofi_lightning.run.results import Results, result_points
from cofi_lightning.run.rundir import recorded_run_id
from cofi_lightning.tools.cli import parse_key_values

EXAMPLES = """\
examples:
  python -m cofi_lightning.deploy run=outputs/demo/<run>                  # ONNX fp32 and INT8
  python -m cofi_lightning.deploy run=outputs/demo/<run> quantize=none    # ONNX fp32 only
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.deploy",
        description="Export a finished run's models to ONNX (and dynamic INT8), re-evaluate and "
        "time them,\nand record them in results.json and the model cards.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a finished run")
    parser.add_argument(
        "--quantize",
        default="int8",
        choices=["int8", "none"],
        help="also write and evaluate model.int8.onnx (default: %(default)s)",
    )
    return parser


def run_config(run_dir: Path) -> TrainConfig:
    """The typed config a run recorded (``config.yaml``)."""
    path = run_dir / "config.yaml"
    needed = ("results.json", "config.yaml", "run.json")
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(
            f"run={run_dir}: not a finished run (no {', '.join(missing)}); run its export stage "
            "first"
        )
    return load_config(OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path)))


def deploy_run(run_dir: Path, quantize: str | None) -> Results:
    """Deploy every export of a finished run; returns its updated :class:`Results`."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    from cofi_lightning.deploy.measure import deploy_export
    from cofi_lightning.run.context import RunContext
    from cofi_lightning.run.model_card import refresh_card

    cfg = run_config(run_dir)
    ctx = RunContext(cfg, run_dir, run_id=recorded_run_id(run_dir))
    results = Results.from_dict(json.loads((run_dir / "results.json").read_text()))
    squad = ctx.task.family == "squad"
    auto = AutoModelForQuestionAnswering if squad else AutoModelForSequenceClassification
    points, exports = [], []
    pairs = zip(result_points(results.to_dict()), results.operating_points, strict=True)
    for (point, _), result in pairs:
        export = point.export_dir(run_dir)
        model = auto.from_pretrained(export)
        seq = cfg.task.max_seq_length
        runtimes = deploy_export(model, export, quantize, ctx.evaluate, result.pruned, seq)
        points.append(replace(result, runtimes=runtimes))
        exports.append((export, result.label))
        done = run_dir / point.stage("export") / "DONE.json"
        record = {**json.loads(done.read_text()), "runtimes": [asdict(r) for r in runtimes]}
        write_text_atomically(done, json.dumps(record, indent=2))
    results = replace(results, operating_points=points)
    write_text_atomically(run_dir / "results.json", json.dumps(results.to_dict(), indent=2))
    refresh_card(run_dir)
    for export, label in exports:  # after the cards: the artifact holds all of the export
        ctx.log_export(export, label)
    ctx.finish_trackers(None)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_key_values(build_parser(), argv)
    try:
        check_deploy_extra("python -m cofi_lightning.deploy")
        results = deploy_run(Path(args.run), None if args.quantize == "none" else args.quantize)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    for point in results.operating_points:
        for r in point.runtimes:
            metric = r.metrics.get(results.main_metric, float("nan"))
            print(
                f"{point.export_dir}  {r.runtime:<10} {results.main_metric} {metric:.2f}  "
                f"{r.size_mb:.2f} MB  {r.latency_ms:.2f} ms ({r.batch} x {r.seq}, "
                f"{r.threads} threads)"
            )


if __name__ == "__main__":
    main()
