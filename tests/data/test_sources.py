"""Mirror-then-hub loading, the combined "not found" message, and validation of malformed files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from datasets import Dataset

from cofi_lightning.data import sources
from cofi_lightning.data.sources import DataError, load_split
from cofi_lightning.data.tasks import TASKS

RTE = TASKS["rte"]


def _rte_rows(n: int = 4, **override) -> dict:
    cols = {
        "sentence1": [f"premise {i}" for i in range(n)],
        "sentence2": [f"hypothesis {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "idx": list(range(n)),
    }
    cols.update(override)
    return cols


@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """Replace the hub with a recorder that fails like an offline machine."""
    calls: list[tuple] = []

    def offline(path, config, split):
        calls.append((path, config, split))
        raise ConnectionError("hub unreachable (offline)")

    monkeypatch.setattr(sources, "load_from_hub", offline)
    return calls


def test_local_mirror_is_read_first(data_dir: Path, hub_calls: list) -> None:
    ds, origin, fingerprint = load_split(RTE, "validation", data_dir)
    path = data_dir / "glue" / "rte" / "validation.parquet"
    assert len(ds) == 277 and origin == str(path)
    assert fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ds[0]["label"] in (0, 1) and set(ds.column_names) >= {"sentence1", "sentence2", "label"}
    assert hub_calls == []


def test_missing_split_names_task_split_every_place_and_fix(data_dir: Path, hub_calls) -> None:
    with pytest.raises(DataError) as err:
        load_split(TASKS["qnli"], "train", data_dir)  # absent from ../shared/data on purpose
    message = str(err.value)
    assert "'train'" in message and "'qnli'" in message
    assert str(data_dir / "glue" / "qnli" / "train.parquet") in message
    assert "nyu-mll/glue" in message and "hub unreachable" in message
    assert "python -m cofi_lightning.tools.prepare task=qnli" in message
    assert hub_calls == [("nyu-mll/glue", "qnli", "train")]


def test_missing_local_split_falls_back_to_hub(data_dir: Path, monkeypatch) -> None:
    hub = Dataset.from_dict({"question": ["q?"], "sentence": ["s."], "label": [1], "idx": [0]})
    seen = []
    monkeypatch.setattr(sources, "load_from_hub", lambda *a: seen.append(a) or hub)
    ds, origin, fingerprint = load_split(TASKS["qnli"], "train", data_dir, check_num_rows=False)
    assert seen == [("nyu-mll/glue", "qnli", "train")]
    assert ds is hub and origin.startswith("hub:nyu-mll/glue") and hub._fingerprint in fingerprint
    with pytest.raises(DataError, match="1 rows, but the official qnli 'train' split has 104,743"):
        load_split(TASKS["qnli"], "train", data_dir)


def test_no_mirror_goes_to_hub_and_use_hub_false_does_not(hub_calls: list) -> None:
    with pytest.raises(DataError, match="none configured"):
        load_split(TASKS["squad"], "validation", None)
    assert hub_calls == [("rajpurkar/squad", None, "validation")]
    with pytest.raises(DataError, match="not tried"):
        load_split(TASKS["squad"], "validation", None, use_hub=False)
    assert len(hub_calls) == 1


@pytest.mark.parametrize(
    ("task", "columns", "expected"),
    [
        ("rte", _rte_rows(sentence2=None), "missing column 'sentence2'"),
        ("rte", _rte_rows(label=None), "missing column 'label'"),
        ("rte", _rte_rows(label=[0, 1, -1, 0]), r"column 'label' has values \[-1\].*test splits"),
        ("rte", _rte_rows(label=[0, 1, 2, 0]), r"column 'label' has values \[2\]"),
        ("rte", _rte_rows(label=["yes", "no", "yes", "no"]), "column 'label' has type string"),
        ("rte", _rte_rows(sentence1=["a", None, "c", "d"]), "column 'sentence1' has 1 null"),
        ("rte", _rte_rows(n=0), "no rows"),
        ("stsb", _rte_rows(label=[0.5, float("nan"), 1.0, 2.0]), "column 'label' has 1 NaN"),
        ("stsb", _rte_rows(label=[0.5, 7.5, 1.0, 2.0]), r"outside \[0.0, 5.0\] \(e.g. 7.5\)"),
        (
            "squad",
            {
                "id": ["a"],
                "title": ["t"],
                "context": ["Paris is big."],
                "question": ["What?"],
                "answers": [{"text": [], "answer_start": []}],
            },
            "column 'answers' of id 'a' has no answer text",
        ),
        (
            "squad",
            {
                "id": ["a"],
                "title": ["t"],
                "context": ["Paris is big."],
                "question": ["What?"],
                "answers": [{"text": ["Paris"], "answer_start": [99]}],
            },
            r"column 'answers.answer_start' of id 'a' is 99",
        ),
    ],
)
def test_malformed_file_names_file_and_column(write_split, task, columns, expected) -> None:
    columns = {k: v for k, v in columns.items() if v is not None}
    path = write_split(task, "train", columns)
    with pytest.raises(DataError, match=expected) as err:
        load_split(TASKS[task], "train", write_split.mirror, use_hub=False, check_num_rows=False)
    assert str(path) in str(err.value)


def test_unreadable_file_is_named(write_split) -> None:
    path = write_split("rte", "train", _rte_rows())
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file") as err:
        load_split(RTE, "train", write_split.mirror, use_hub=False)
    assert str(path) in str(err.value)


def test_truncated_split_is_refused_unless_allowed(write_split) -> None:
    path = write_split("rte", "train", _rte_rows(n=10))
    with pytest.raises(DataError, match="10 rows, but the official rte 'train' split has 2,490"):
        load_split(RTE, "train", write_split.mirror, use_hub=False)
    ds, origin, _ = load_split(
        RTE, "train", write_split.mirror, use_hub=False, check_num_rows=False
    )
    assert len(ds) == 10 and origin == str(path)
