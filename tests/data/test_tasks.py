"""The task registry, the Hydra task/paths configs that mirror it, and the default data location."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import cofi_lightning.config  # noqa: F401  (the schema and the cofi.* resolvers)
from cofi_lightning.data import GlueDataModule, SquadDataModule, sources
from cofi_lightning.data.tasks import GLUE_TASKS, TASKS, get_task

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def test_registry_covers_glue_and_squad() -> None:
    assert set(TASKS) == {"sst2", "mnli", "qnli", "qqp", "cola", "rte", "mrpc", "stsb", "squad"}
    assert len(GLUE_TASKS) == 8
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["mnli"].main_metric_key == "mnli_m/accuracy"
    assert TASKS["rte"].main_metric_key == "accuracy"
    assert TASKS["stsb"].is_regression and TASKS["stsb"].num_labels == 1
    assert TASKS["cola"].main_metric == "matthews_correlation"
    assert TASKS["squad"].max_seq_length == 384
    assert all(TASKS[t].max_seq_length == 128 for t in GLUE_TASKS)
    assert TASKS["sst2"].expected_rows("train") == 67349


def test_get_task_accepts_glue_spellings_and_names_known_tasks() -> None:
    assert get_task("SST-2") is TASKS["sst2"]
    assert get_task("sts-b") is TASKS["stsb"]
    with pytest.raises(KeyError, match="known tasks: sst2, mnli"):
        get_task("wnli")


def _compose(task: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"task={task}", *overrides])


@pytest.mark.parametrize("name", list(TASKS))
def test_task_config_agrees_with_registry(name: str, tokenizer, tmp_path: Path) -> None:
    """The config sets what a user may change; metrics and splits are the registry's alone."""
    cfg = _compose(name, f"paths.data_dir={tmp_path}")
    spec = TASKS[name]
    assert not {"metrics", "main_metric", "eval_splits", "eval_names"} & set(cfg.task)
    assert cfg.task.name == name
    assert cfg.task.num_labels == spec.num_labels
    assert cfg.task.max_seq_length == spec.max_seq_length
    dm = instantiate(cfg.task.datamodule)(tokenizer=tokenizer)
    assert isinstance(dm, SquadDataModule if name == "squad" else GlueDataModule)
    assert dm.task is spec and dm.max_seq_length == spec.max_seq_length
    assert dm.data_dir == str(tmp_path)


def test_paths_default_uses_env_then_repo_shared(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COFI_DATA_DIR", str(tmp_path))
    assert _compose("rte").paths.data_dir == str(tmp_path)
    monkeypatch.delenv("COFI_DATA_DIR")
    shared = sources.REPO_ROOT.parent / "shared" / "data"
    assert sources.default_data_dir() == (str(shared) if shared.is_dir() else None)
    monkeypatch.setattr(sources, "REPO_ROOT", tmp_path / "repo")  # no ../shared/data beside it
    assert _compose("rte").paths.data_dir is None  # None: the hub
    monkeypatch.setenv("COFI_CACHE_DIR", str(tmp_path / "c"))
    assert _compose("rte").paths.cache_dir == str(tmp_path / "c")
