"""Read back an offline W&B run (``<dir>/wandb/offline-run-*``) in tests, without a network.

wandb has no public reader of its ``.wandb`` transaction log, so this parses the file itself. The
file is in LevelDB's log format: a 7-byte header (``b":W&B"``, magic ``0xBEE1``, version 0), then
32 KiB blocks of chunks, each with a 7-byte header ``(crc32c, length, type)`` where type 1 is a
whole record and 2/3/4 the first/middle/last piece of a split one; a block tail shorter than a
header is padding. Each record is a ``wandb_internal_pb2.Record`` protobuf. CRCs are not checked.

History rows and the summary are nested dicts: an item with ``nested_key = ["a", "b"]`` (how wandb
stores media such as tables: ``{"prune/structure/table": {"path": ..., "_type": ...}}``) sets
``row["a"]["b"]``; a single-element ``nested_key`` is just the key.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ident, magic, version
CHUNK = struct.Struct("<IHB")  # crc32c, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    if (ident, magic, version) != (b":W&B", 0xBEE1, 0):
        raise ValueError(f"{path}: not a W&B transaction log (header {ident!r} {magic:#x})")
    pos, pieces = HEADER.size, []
    while pos < len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # block padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        if kind == 0 and length == 0:  # zero fill after the last record
            break
        if pos + length > len(data):  # still being written
            return
        pieces.append(data[pos : pos + length])
        pos += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


def _set(target: dict, item: Any) -> None:
    """Apply one history/summary/config item (``key`` or ``nested_key`` path, ``value_json``)."""
    path = [item.key] if item.key else list(item.nested_key)
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What one offline run recorded.

    Attributes:
        path: The ``offline-run-*`` directory.
        name, group, job_type, tags, run_id: From the run record.
        config: The run config (``_wandb`` dropped).
        history: One dict per ``run.log`` call, values decoded (media are dicts with ``path``).
        summary: The final summary.
        metrics: ``define_metric`` records: ``{"name" or "glob_name": ..., "step_metric": ...}``.
        charts: Custom charts (``wandb.plot.*``) by key: their panel config (``panelDefId``,
            ``fieldSettings``, ...); the chart's data is the table ``<key>_table``.
    """

    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, str]] = field(default_factory=list)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        """Where the run's files are (tables under ``media/table``, images ``media/images``)."""
        return self.path / "files"

    def rows(self, key: str) -> list[dict[str, Any]]:
        """The history rows that logged ``key``."""
        return [row for row in self.history if key in row]

    def media(self, value: dict[str, Any]) -> Path:
        """The file of a logged table or image (a history or summary value)."""
        return self.files_dir / value["path"]

    def table(self, value: dict[str, Any]) -> dict[str, Any]:
        """A logged table as ``{"columns": [...], "data": [[...], ...]}``."""
        return json.loads(self.media(value).read_text())


def offline_run_dir(run_dir: str | Path) -> Path:
    """The single ``wandb/offline-run-*`` directory below ``run_dir`` (error if not one)."""
    found = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    if len(found) != 1:
        raise AssertionError(f"expected one offline W&B run under {run_dir}, found {found}")
    return found[0]


def finished_records(path: Path, timeout_s: float = 10.0) -> list[wandb_internal_pb2.Record]:
    """The records of a finished run's log, waiting until its ``exit`` record is written.

    ``run.finish()`` returns before wandb's writer process has flushed the file, so a test that
    reads right after it would see a partial log.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(iter_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no exit record after {timeout_s} s (run not finished?)")
        time.sleep(0.05)


def read_offline_run(run_dir: str | Path, timeout_s: float = 10.0) -> OfflineRun:
    """Parse the one finished offline run below ``run_dir`` (the ``dir`` of ``wandb.init``).

    Args:
        run_dir: The directory given to ``wandb.init`` (``<run_dir>/wandb/offline-run-*``).
        timeout_s: How long to wait for wandb to finish writing the run's log.
    """
    path = offline_run_dir(run_dir)
    (log,) = path.glob("*.wandb")
    out = OfflineRun(path)
    for record in finished_records(log, timeout_s):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.name, out.group, out.job_type = run.display_name, run.run_group, run.job_type
            out.tags, out.run_id = list(run.tags), run.run_id
            for item in run.config.update:
                _set(out.config, item)
        elif kind == "config":
            for item in record.config.update:
                _set(out.config, item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, item)
            out.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set(out.summary, item)
            for item in record.summary.remove:
                out.summary.pop(item.key or item.nested_key[0], None)
        elif kind == "metric":
            m = record.metric
            name = {"name": m.name} if m.name else {"glob_name": m.glob_name}
            out.metrics.append({**name, "step_metric": m.step_metric})
    visualize = out.config.pop("_wandb", {}).get("visualize", {})
    out.charts = {key: chart["panel_config"] for key, chart in visualize.items()}
    return out
