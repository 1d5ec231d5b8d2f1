"""Where raw task data comes from (the default locations, a local Parquet mirror, else the hub) and
the checks that make it safe to train on, with errors that name the file and column.

Mirror layout (the hub schemas, exactly what ``../shared/data`` holds)::

    <data_dir>/glue/<task>/<split>.parquet      e.g. glue/mnli/validation_matched.parquet
    <data_dir>/squad/<split>.parquet
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset

from cofi_lightning.data.tasks import TaskSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class DataError(RuntimeError):
    """A split is missing everywhere, or a file is malformed; the message says what and where."""


def shared_dir() -> str:
    """``$COFI_SHARED_DIR``, else ``<repo>/../shared`` (the read-only models and data)."""
    return os.environ.get("COFI_SHARED_DIR") or str(REPO_ROOT.parent / "shared")


def default_data_dir() -> str | None:
    """The local mirror when none is configured: ``$COFI_DATA_DIR``, else ``<shared dir>/data`` if
    it exists, else ``None`` (the hub)."""
    env = os.environ.get("COFI_DATA_DIR")
    if env:
        return env
    shared = Path(shared_dir()) / "data"
    return str(shared) if shared.is_dir() else None


def default_cache_dir() -> str:
    """Tokenized-feature cache: ``$COFI_CACHE_DIR``, else ``~/.cache/cofi_lightning``."""
    return os.environ.get("COFI_CACHE_DIR") or str(Path.home() / ".cache" / "cofi_lightning")


def local_path(data_dir: str | os.PathLike, task: TaskSpec, split: str) -> Path:
    """Path of ``split`` of ``task`` inside a mirror directory (see the module docstring)."""
    if task.family == "squad":
        return Path(data_dir) / "squad" / f"{split}.parquet"
    return Path(data_dir) / "glue" / task.name / f"{split}.parquet"


def train_rows(task: TaskSpec, data_dir: str | os.PathLike | None, limit: int | None) -> int | None:
    """How many training examples the DataModule will train on, known without loading or
    tokenizing (for the door check of the prune stage's length): the mirror file's row count,
    else the hub split's official size, cut to ``limit``. None for SQuAD (several features per
    question, counted only by tokenizing) or an unreadable file."""
    if task.family == "squad":
        return None
    rows = None
    if data_dir is not None:
        path = local_path(data_dir, task, task.train_split)
        if path.is_file():
            try:
                rows = pq.read_metadata(path).num_rows
            except (pa.ArrowException, OSError):
                return None  # loading it names the problem
    if rows is None:
        rows = task.expected_rows(task.train_split)
    if rows is None:
        return None
    return rows if limit is None else min(rows, int(limit))


def load_from_hub(path: str, config: str | None, split: str) -> Dataset:
    """Load one split from the Hugging Face hub (or its local ``datasets`` cache)."""
    return datasets.load_dataset(path, config, split=split)


def prepare_hint(task: TaskSpec) -> str:
    """How to create the missing files, for error messages."""
    return (
        "To fix: on a machine with network run `python -m cofi_lightning.tools.prepare "
        f"task={task.name} data_dir=<mirror dir>` and copy that directory to where the job runs, "
        "then point COFI_DATA_DIR (or paths.data_dir) at it; or give this machine hub access."
    )


def load_split(
    task: TaskSpec,
    split: str,
    data_dir: str | os.PathLike | None,
    use_hub: bool = True,
    check_num_rows: bool = True,
) -> tuple[Dataset, str, str]:
    """Load and validate one split: the local mirror first, then the hub.

    Returns:
        ``(dataset, origin, fingerprint)``: the rows in hub schema; the file path or hub name for
        messages; a string that changes whenever the data changes (for the cache key).

    Raises:
        DataError: The split is nowhere (the message lists every place looked in and how to
            prepare it), or the data found is malformed.
    """
    looked: list[str] = []
    if data_dir is not None:
        path = local_path(data_dir, task, split)
        if path.is_file():
            table = read_parquet(path)
            check_table(table, task, split, str(path), check_num_rows)
            return Dataset(table), str(path), _file_sha256(path)
        looked.append(f"local mirror: {path} (no such file)")
    else:
        looked.append("local mirror: none configured (data_dir / COFI_DATA_DIR unset)")
    hub = f"Hugging Face hub: {task.hub_path} (config {task.hub_config!r}, split {split!r})"
    if use_hub:
        try:
            ds = load_from_hub(task.hub_path, task.hub_config, split)
        except Exception as err:  # noqa: BLE001 - any hub failure becomes one clear message below
            looked.append(f"{hub}: {type(err).__name__}: {err}")
        else:
            origin = f"hub:{task.hub_path}/{task.hub_config or 'default'}/{split}"
            check_table(ds.data.table, task, split, origin, check_num_rows)
            return ds, origin, f"hub-{ds._fingerprint}"
    else:
        looked.append(f"{hub}: not tried (use_hub=False)")
    places = "\n".join(f"  - {p}" for p in looked)
    raise DataError(
        f"Split {split!r} of task {task.name!r} was not found. Looked in:\n{places}\n"
        f"{prepare_hint(task)}"
    )


def read_parquet(path: Path) -> pa.Table:
    """Read a mirror file; an unreadable file raises :class:`DataError` naming it."""
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_table(
    table: pa.Table, task: TaskSpec, split: str, origin: str, check_num_rows: bool = True
) -> None:
    """Validate one split in hub schema; every :class:`DataError` names ``origin`` (the file or
    hub name): empty table, missing column, null text, label outside the task's label set (e.g.
    the ``-1`` of GLUE test splits, NaN for STS-B), or a row count other than the official one."""
    if table.num_rows == 0:
        raise DataError(
            f"{origin}: no rows (split {split!r} of task {task.name!r}); refusing to use it"
        )
    required = list(task.text_columns)
    required += ["id", "answers"] if task.family == "squad" else ["label"]
    for column in required:
        if column not in table.column_names:
            raise DataError(
                f"{origin}: missing column {column!r} (has {table.column_names}); "
                f"task {task.name!r} needs {required} in the hub schema"
            )
    for column in task.text_columns:
        col = table.column(column)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise DataError(f"{origin}: column {column!r} has type {col.type}, expected string")
        if col.null_count:
            raise DataError(f"{origin}: column {column!r} has {col.null_count} null values")
    if task.family == "squad":
        _check_squad_answers(table, origin)
    else:
        _check_labels(table.column("label"), task, origin)
    expected = task.expected_rows(split)
    if check_num_rows and expected is not None and table.num_rows != expected:
        raise DataError(
            f"{origin}: {table.num_rows:,} rows, but the official {task.name} {split!r} split has "
            f"{expected:,}; refusing a truncated or wrong file. Use limit_*_samples for quick "
            "runs, or check_num_rows=False for a deliberate custom subset."
        )


def _check_labels(labels: pa.ChunkedArray, task: TaskSpec, origin: str) -> None:
    if labels.null_count:
        raise DataError(f"{origin}: column 'label' has {labels.null_count} null values")
    if task.is_regression:
        if not pa.types.is_floating(labels.type) and not pa.types.is_integer(labels.type):
            raise DataError(f"{origin}: column 'label' has type {labels.type}, expected float")
        values = labels.cast(pa.float64())
        n_nan = pc.sum(pc.is_nan(values)).as_py() or 0
        if n_nan:
            raise DataError(f"{origin}: column 'label' has {n_nan} NaN values")
        low, high = task.label_range
        bad = pc.or_(pc.less(values, low), pc.greater(values, high))
        n_bad = pc.sum(bad).as_py() or 0
        if n_bad:
            first = values.filter(bad)[0].as_py()
            raise DataError(
                f"{origin}: column 'label' has {n_bad} values outside [{low}, {high}] "
                f"(e.g. {first})"
            )
        return
    if not pa.types.is_integer(labels.type):
        raise DataError(
            f"{origin}: column 'label' has type {labels.type}, expected integer class ids"
        )
    found = set(pc.unique(labels).to_pylist())
    bad_values = sorted(found - set(task.label_values))
    if bad_values:
        hint = " (-1 marks the hidden labels of GLUE test splits)" if -1 in bad_values else ""
        raise DataError(
            f"{origin}: column 'label' has values {bad_values} outside task {task.name!r}'s "
            f"label set {list(task.label_values)}{hint}"
        )


def _check_squad_answers(table: pa.Table, origin: str) -> None:
    """Every question has at least one answer whose span lies inside its context."""
    contexts = table.column("context").to_pylist()
    answers = table.column("answers").to_pylist()
    ids = table.column("id").to_pylist()
    mismatched = 0
    for qid, context, ans in zip(ids, contexts, answers, strict=True):
        if not ans or not ans.get("text") or ans.get("answer_start") is None:
            raise DataError(f"{origin}: column 'answers' of id {qid!r} has no answer text")
        if len(ans["text"]) != len(ans["answer_start"]):
            raise DataError(f"{origin}: column 'answers' of id {qid!r}: text/answer_start differ")
        for text, start in zip(ans["text"], ans["answer_start"], strict=True):
            if start is None or not 0 <= start <= len(context) or not text:
                raise DataError(
                    f"{origin}: column 'answers.answer_start' of id {qid!r} is {start}, "
                    f"outside its context of {len(context)} characters (or the answer is empty)"
                )
            mismatched += context[start : start + len(text)] != text
    if mismatched:
        log.warning(
            "%s: %d answers whose text differs from context[answer_start:...]; training uses "
            "answer_start as given",
            origin,
            mismatched,
        )
