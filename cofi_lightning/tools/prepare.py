"""Write a local Parquet mirror of task data from the Hugging Face hub, on a machine with network,
for compute nodes without (``python -m cofi_lightning.tools.prepare task=sst2 data_dir=<dir>``).
Each split is written through a temporary file, then read back and validated like
any other mirror file (``cofi_lightning.data.sources`` owns the layout and the checks).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cofi_lightning.data import sources
from cofi_lightning.data.tasks import TASKS, get_task
from cofi_lightning.tools.cli import add_flag, parse_key_values

log = logging.getLogger(__name__)


def prepare(tasks: list[str], data_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Download every split of ``tasks`` (``all``: every task) into the mirror ``data_dir``;
    returns the files written (existing ones are kept unless ``overwrite``).

    Raises:
        DataError: A split cannot be downloaded, or fails validation (then nothing is left at its
            final path).
    """
    specs = list(TASKS.values()) if "all" in tasks else [get_task(t) for t in tasks]
    written: list[Path] = []
    for task in specs:
        for split in task.splits:
            path = sources.local_path(data_dir, task, split)
            if path.is_file() and not overwrite:
                log.info("%s exists; skipped (overwrite=true to replace)", path)
                continue
            log.info("downloading %s %s from %s", task.name, split, task.hub_path)
            try:
                ds = sources.load_from_hub(task.hub_path, task.hub_config, split)
            except Exception as err:  # noqa: BLE001 - reworded with what was being fetched
                raise sources.DataError(
                    f"could not download {task.name} {split!r} from the hub ({task.hub_path}): "
                    f"{type(err).__name__}: {err}. This command needs network access to the hub "
                    "(and HF_HUB_OFFLINE unset)."
                ) from err
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".parquet.tmp")
            ds.to_parquet(str(tmp))
            try:
                sources.check_table(sources.read_parquet(tmp), task, split, str(path))
            except sources.DataError:
                tmp.unlink()
                raise
            os.replace(tmp, path)
            log.info("wrote %s (%d rows)", path, len(ds))
            written.append(path)
    return written


def _task_list(value: str) -> list[str]:
    """``"mnli,squad"`` -> ``["mnli", "squad"]``, every name checked (``all``: every task)."""
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no task given")
    for name in names:
        if name != "all":
            try:
                get_task(name)
            except KeyError as err:
                raise argparse.ArgumentTypeError(err.args[0]) from None
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.tools.prepare",
        description="Download every split of the given tasks from the Hugging Face hub into a "
        "local Parquet mirror (for compute nodes without network).",
        epilog="Every --key value may also be written key=value, e.g. "
        "`python -m cofi_lightning.tools.prepare task=sst2 data_dir=/path/to/mirror`.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--task",
        type=_task_list,
        metavar="NAMES",
        help=f"comma-separated task names or 'all' (known: {', '.join(TASKS)})",
    )
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        "--paths.data_dir",
        dest="data_dir",
        metavar="DIR",
        help="mirror directory to write (default: $COFI_DATA_DIR); paths.data_dir= as in training",
    )
    add_flag(parser, "--overwrite", "replace files that already exist (default: false, keep them)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parse_key_values(parser, argv)
    data_dir = args.data_dir or os.environ.get("COFI_DATA_DIR")
    if not args.task:
        parser.error("give the tasks: task=<name|all|a,b>")
    if not data_dir:
        parser.error("give the mirror directory: data_dir=<dir> (or set $COFI_DATA_DIR)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prepare(args.task, data_dir, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
