"""Reuse of a finished teacher by a run whose teacher identity is the same.

A change to a later stage's setting (``pruning.lr``, an ablation, a target) gives a new run
directory; its teacher stage would train the very teacher the earlier run trained. This file owns
where such a teacher is looked for (the run directories beside this one: one experiment's runs
share a parent, ``outputs/<experiment>/`` or ``multirun/<experiment>/``), when one matches (its
``teacher/DONE.json`` records the same :func:`~cofi_lightning.config.identity.teacher_identity`;
teachers trained before that record existed are not considered) and how it is copied (hard links
where the file system allows: no extra space, and the copy survives the other run's deletion).
Whether to look (``distill.reuse_teacher``) is ``cofi_lightning.run.stages``'.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_info

from cofi_lightning.run.ranks import barrier, is_global_zero

if TYPE_CHECKING:
    from cofi_lightning.run.context import RunContext

#: The teacher stage's files in a run directory.
TEACHER_DONE = Path("teacher") / "DONE.json"
TEACHER_MODEL = Path("teacher") / "model"


def as_recorded(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` as ``teacher/DONE.json`` records it (and reads it back): plain JSON values."""
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def find_teacher(run_dir: Path, identity: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """A finished teacher of ``identity`` in a run directory beside ``run_dir``.

    Args:
        run_dir: This run's directory.
        identity: This run's teacher identity.

    Returns:
        ``(model directory, its teacher/DONE.json record)`` of the first match by directory name,
        or None.
    """
    here = Path(run_dir).resolve()
    wanted = as_recorded(identity)
    for done in sorted(here.parent.glob(f"*/{TEACHER_DONE}")):
        if done.parents[1] == here:
            continue
        try:
            record = json.loads(done.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours: not a finished teacher
        model = done.parents[1] / TEACHER_MODEL
        if record.get("teacher_identity") == wanted and (model / "config.json").is_file():
            return model, record
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def copy_teacher(src: Path, dst: Path) -> None:
    """Copy a teacher's model directory to ``dst`` (replaced whole: a temporary directory is
    renamed into place, so a kill leaves no partial teacher; the run's lock makes any other
    temporary one beside it a killed attempt's, removed here)."""
    for stale in dst.parent.glob(f"{dst.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.replace(dst)


def reuse_teacher(ctx: RunContext, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher stage's record of a finished teacher of the same teacher identity beside this
    run, copied into ``teacher/model`` (None when there is none: the stage trains one)."""
    found = find_teacher(ctx.run_dir, identity)
    if found is None:
        return None
    src, record = found
    out = ctx.run_dir / TEACHER_MODEL
    if is_global_zero():
        copy_teacher(src, out)
    barrier()
    rank_zero_info(
        f"[teacher] reusing the finished teacher of {src.parents[1]} (same teacher identity; "
        "distill.reuse_teacher=false trains one here)"
    )
    return {
        "teacher_dir": str(out),
        "metrics": record["metrics"],
        "teacher_identity": identity,
        "reused_from": str(src),
    }
