"""CLI: ``python -m cofi_lightning.report <sweep dir> [<dir> ...] [out=<dir>]``.

Collects the runs below the given directories, writes the report (default
``<first dir>/report/``) and prints the path of ``report.md``, the results table and the
number of missing or failed jobs. Exit status: 0 with at least one run, 1 with none, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cofi_lightning.report.collect import collect_runs
from cofi_lightning.report.tables import aggregate, summary_table
from cofi_lightning.report.write import write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.report",
        description="Summarize CoFi runs (results.json) below sweep or run directories.",
    )
    parser.add_argument("paths", nargs="+", help="sweep or run directories (searched recursively)")
    parser.add_argument("--out", help="report directory (default: <first path>/report)")
    args = parser.parse_args(argv)
    # Hydra-style `out=<dir>` next to the paths, as in the rest of the project's commands.
    outs = [p.removeprefix("out=") for p in args.paths if p.startswith("out=")]
    args.paths = [p for p in args.paths if not p.startswith("out=")]
    if not args.paths:
        parser.error("no sweep directory given")
    if len(outs) + (args.out is not None) > 1:
        parser.error("give the report directory once (out=<dir> or --out)")
    args.out = Path(args.out or (outs[0] if outs else Path(args.paths[0]) / "report"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    try:
        runs, problems = collect_runs(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = write_report(runs, problems, args.out, sources=args.paths)
    print(path)
    if runs:
        print(summary_table(aggregate(runs)))
    print(f"{len(runs)} runs, {len(problems)} missing or failed jobs (listed in {path.name})")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
