"""CLI: ``python -m cofi_lightning.tools.report <sweep dir> [<dir> ...] [out=<dir>] [--wandb]``.

Prints the path of ``report.md``, the results table and the number of missing or failed jobs.
Exit status: 0 with at least one run; 1 with none, or when the report cannot be written (one
line each); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cofi_lightning.tools.report.collect import collect_runs
from cofi_lightning.tools.report.tables import aggregate, summary_table
from cofi_lightning.tools.report.wandb_report import log_report
from cofi_lightning.tools.report.write import write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.tools.report",
        description="Summarize CoFi runs (results.json) below sweep or run directories.",
    )
    parser.add_argument("paths", nargs="+", help="sweep or run directories (searched recursively)")
    parser.add_argument("--out", help="report directory (default: <first path>/report)")
    tracking = parser.add_argument_group("W&B", "log the report into one W&B run (job type report)")
    tracking.add_argument("--wandb", action="store_true", help="log the report to W&B")
    tracking.add_argument(
        "--wandb-group", help="W&B group: the sweep's experiment name (default: first path's name)"
    )
    tracking.add_argument("--wandb-project", default="cofi-lightning", help="W&B project")
    tracking.add_argument("--wandb-entity", help="W&B entity (default: your default entity)")
    args = parser.parse_args(argv)
    # Hydra-style `out=<dir>` next to the paths, as in the rest of the project's commands.
    outs = [p.removeprefix("out=") for p in args.paths if p.startswith("out=")]
    args.paths = [p for p in args.paths if not p.startswith("out=")]
    if not args.paths:
        parser.error("no sweep directory given")
    if len(outs) + (args.out is not None) > 1:
        parser.error("give the report directory once (out=<dir> or --out)")
    args.out = Path(args.out or (outs[0] if outs else Path(args.paths[0]) / "report"))
    args.wandb_group = args.wandb_group or Path(args.paths[0]).resolve().name
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    try:
        runs, problems = collect_runs(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs and not problems:  # not a sweep: say so rather than write an empty report there
        where = ", ".join(args.paths)
        print(
            f"error: no runs found under {where} (no results.json, no Hydra job): give a sweep "
            "or run directory",
            file=sys.stderr,
        )
        return 1
    try:
        path = write_report(runs, problems, args.out, sources=args.paths)
    except OSError as err:
        print(
            f"error: cannot write the report into {args.out} ({err.strerror or err}): give a "
            "writable folder with out=<dir>",
            file=sys.stderr,
        )
        return 1
    print(path)
    if runs:
        print(summary_table(aggregate(runs)))
    print(f"{len(runs)} runs, {len(problems)} missing or failed jobs (listed in {path.name})")
    if args.wandb and runs:
        run_dir = log_report(
            runs,
            problems,
            args.out,
            group=args.wandb_group,
            project=args.wandb_project,
            entity=args.wandb_entity,
        )
        print(f"W&B run: {run_dir}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
