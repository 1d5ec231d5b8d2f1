"""Experiment files hold only what they change: no key, and no group choice, restates what the
defaults (or the experiment it builds on) already give (a restated value hides which settings
make the experiment)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
#: A GLUE task and SQuAD: their task configs differ in data defaults (SQuAD's eval_batch_size), so
#: a key equal to the default for one may still change the other.
TASKS = ("sst2", "squad")


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from _leaves(value, path)
        else:
            yield path, value


def _group_choices(defaults: list) -> dict[str, str]:
    """``{group: option}`` of an experiment's ``override /<group>: <option>`` entries; another
    experiment it builds on (a plain name) is ``{"experiment": name}``."""
    out = {}
    for entry in defaults:
        if isinstance(entry, str):
            entry = {"experiment": entry}
        for key, value in entry.items():
            out[key.removeprefix("override ").removeprefix("/")] = value
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sets_only_values_that_change(name, compose_train):
    written = yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text())
    choices = _group_choices(written.pop("defaults", []))
    train_yaml = yaml.safe_load((CONF_DIR / "train.yaml").read_text())
    train_defaults = _group_choices(d for d in train_yaml["defaults"] if isinstance(d, dict))
    restated = [f"{g}: {o}" for g, o in choices.items() if train_defaults.get(g) == o]
    groups = [f"{g}={o}" for g, o in choices.items()]
    keys = [path for path, _ in _leaves(written)]
    for task in TASKS:
        base = compose_train([*groups, f"task={task}"], hydra_cfg=True)
        mine = compose_train([f"experiment={name}", f"task={task}"], hydra_cfg=True)
        keys = [
            k
            for k in keys
            if OmegaConf.select(base, k, throw_on_missing=False)
            == OmegaConf.select(mine, k, throw_on_missing=False)
        ]
    assert not restated + keys, f"conf/experiment/{name}.yaml restates defaults: {restated + keys}"
