"""The mirror-writing command, with the hub replaced by the real files of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from cofi_lightning.data import DataError, load_split, sources
from cofi_lightning.data.tasks import TASKS
from cofi_lightning.tools import prepare


@pytest.fixture
def fake_hub(data_dir: Path, monkeypatch) -> list:
    """A hub that serves the GLUE files of ../shared/data (``nyu-mll/glue`` configs only)."""
    calls = []

    def hub(path, config, split):
        calls.append((path, config, split))
        return Dataset(pq.read_table(data_dir / "glue" / config / f"{split}.parquet"))

    monkeypatch.setattr(sources, "load_from_hub", hub)
    return calls


def test_prepare_writes_a_mirror_the_datamodules_read(fake_hub, data_dir, tmp_path) -> None:
    written = prepare.prepare(["rte"], tmp_path)
    assert written == [
        tmp_path / "glue/rte/train.parquet",
        tmp_path / "glue/rte/validation.parquet",
    ]
    assert fake_hub == [("nyu-mll/glue", "rte", "train"), ("nyu-mll/glue", "rte", "validation")]
    for split in ("train", "validation"):
        ours = pq.read_table(tmp_path / "glue" / "rte" / f"{split}.parquet")
        assert ours.equals(pq.read_table(data_dir / "glue" / "rte" / f"{split}.parquet"))
    ds, origin, _ = load_split(TASKS["rte"], "train", tmp_path, use_hub=False)
    assert len(ds) == 2490 and origin.startswith(str(tmp_path))
    assert prepare.prepare(["rte"], tmp_path) == []  # existing files are kept
    assert len(prepare.prepare(["rte"], tmp_path, overwrite=True)) == 2


def test_prepare_refuses_bad_hub_data_and_leaves_nothing(monkeypatch, tmp_path) -> None:
    test_split = Dataset.from_dict(
        {"sentence1": ["a"], "sentence2": ["b"], "label": [-1], "idx": [0]}
    )  # what a GLUE *test* split looks like
    monkeypatch.setattr(sources, "load_from_hub", lambda *a: test_split)
    with pytest.raises(DataError, match=r"column 'label' has values \[-1\]"):
        prepare.prepare(["rte"], tmp_path)
    assert not list(tmp_path.rglob("*.parquet*"))


def test_command_line(fake_hub, tmp_path) -> None:
    prepare.main(["task=mrpc,rte", f"paths.data_dir={tmp_path}"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
        "glue/mrpc/train.parquet",
        "glue/mrpc/validation.parquet",
        "glue/rte/train.parquet",
        "glue/rte/validation.parquet",
    ]
    written = sorted(tmp_path.rglob("*.parquet"))
    prepare.main(["--task", "rte", "--data-dir", str(tmp_path), "--overwrite"])  # option spelling
    assert sorted(tmp_path.rglob("*.parquet")) == written
    assert fake_hub[-2:] == [
        ("nyu-mll/glue", "rte", "train"),
        ("nyu-mll/glue", "rte", "validation"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=rte", "data_dir={tmp}", "colour=red"], "unknown key(s): colour"),
        (["task=rte,rtx", "data_dir={tmp}"], "argument --task: unknown task 'rtx'"),
        (["task=rte", "data_dir={tmp}", "overwrite=maybe"], "argument --overwrite: expected true"),
        (["task=rte"], "give the mirror directory: data_dir=<dir>"),  # COFI_DATA_DIR unset below
        (["data_dir={tmp}"], "give the tasks: task="),
    ],
)
def test_bad_arguments_exit_2_naming_the_key(fake_hub, tmp_path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_:
        prepare.main([a.format(tmp=tmp_path) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m cofi_lightning.tools.prepare") and message in err
    assert fake_hub == [] and not list(tmp_path.rglob("*.parquet"))


def test_help_explains_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        prepare.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    assert "--task NAMES comma-separated task names or 'all'" in text
    assert "--paths.data_dir DIR mirror directory to write (default: $COFI_DATA_DIR)" in text
    assert "--overwrite [BOOL] replace files that already exist" in text
    assert "may also be written key=value" in text


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch) -> None:
    monkeypatch.delenv("COFI_DATA_DIR", raising=False)
