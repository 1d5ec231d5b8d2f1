"""Data-test fixtures: the MiniLM tokenizer, an isolated feature cache, tiny Parquet mirrors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch) -> None:
    """Never write tokenized features into the user's ~/.cache during tests."""
    monkeypatch.setenv("COFI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cofi-cache"))


@pytest.fixture(scope="session")
def tokenizer(minilm_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture
def write_split(tmp_path: Path):
    """``write_split(task, split, {column: values})`` writes one split into a tmp mirror."""
    mirror = tmp_path / "mirror"

    def write(task: str, split: str, columns: dict | pa.Table) -> Path:
        sub = mirror / "squad" if task == "squad" else mirror / "glue" / task
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{split}.parquet"
        table = columns if isinstance(columns, pa.Table) else pa.table(columns)
        pq.write_table(table, path)
        return path

    write.mirror = mirror
    return write
