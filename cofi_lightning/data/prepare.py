"""Write a local Parquet mirror of task data from the Hugging Face hub (for offline compute nodes).

Usage, on a machine with network::

    python -m cofi_lightning.data.prepare task=sst2 data_dir=/path/to/mirror
    python -m cofi_lightning.data.prepare task=mnli,squad data_dir=/path/to/mirror overwrite=true
    python -m cofi_lightning.data.prepare task=all            # data_dir from $COFI_DATA_DIR

Arguments are ``key=value`` (OmegaConf dot-list; ``paths.data_dir=`` is accepted too, so the same
overrides as training work). Each split is written to ``<data_dir>/glue/<task>/<split>.parquet`` or
``<data_dir>/squad/<split>.parquet`` in the hub schema, through a temporary file, then read back and
validated like any other mirror file. Existing files are kept unless ``overwrite=true``. This file
owns only the command; loading and checks are in ``sources.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from cofi_lightning.data import sources
from cofi_lightning.data.tasks import TASKS, get_task

log = logging.getLogger(__name__)


def prepare(tasks: list[str], data_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Download every split of ``tasks`` from the hub into the mirror ``data_dir``.

    Args:
        tasks: Task names (``all`` expands to the nine tasks).
        data_dir: Mirror directory to write.
        overwrite: Replace files that already exist.

    Returns:
        Paths of the files written (existing ones skipped are not listed).

    Raises:
        DataError: A split cannot be downloaded, or fails validation (then nothing is left at its
            final path).
    """
    names = list(TASKS) if "all" in tasks else [get_task(t).name for t in tasks]
    written: list[Path] = []
    for name in names:
        task = get_task(name)
        for split in task.splits:
            path = sources.local_path(data_dir, task, split)
            if path.is_file() and not overwrite:
                log.info("%s exists; skipped (overwrite=true to replace)", path)
                continue
            log.info("downloading %s %s from %s", name, split, task.hub_path)
            try:
                ds = sources.load_from_hub(task.hub_path, task.hub_config, split)
            except Exception as err:  # noqa: BLE001 - reworded with what was being fetched
                raise sources.DataError(
                    f"could not download {name} {split!r} from the hub ({task.hub_path}): "
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


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = OmegaConf.from_dotlist(sys.argv[1:] if argv is None else argv)
    task = args.get("task")
    data_dir = args.get("data_dir") or OmegaConf.select(args, "paths.data_dir")
    data_dir = data_dir or os.environ.get("COFI_DATA_DIR")
    if not task or not data_dir:
        raise SystemExit(
            "usage: python -m cofi_lightning.data.prepare task=<name|all|a,b> data_dir=<dir> "
            "[overwrite=true]   (data_dir defaults to $COFI_DATA_DIR)"
        )
    names = [t.strip() for t in str(task).split(",") if t.strip()]
    prepare(names, data_dir, overwrite=bool(args.get("overwrite", False)))


if __name__ == "__main__":
    main()
