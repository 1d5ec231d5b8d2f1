"""Run identities survive config tidying: the hashes of these configs are the ones the code of
commit 90c770e computed, when ``conf/task`` still repeated the registry's metrics and evaluation
splits. A changed hash orphans every existing run directory of that config (it is refused, and a
sweep's job directories get new names)."""

from __future__ import annotations

import pytest

from cofi_lightning.config import config_hash, config_identity
from cofi_lightning.data.tasks import TASKS

#: ``(overrides, hash)`` computed at 90c770e. The experiments name the model, since theirs
#: resolves to ``../shared`` or the hub depending on the machine.
HASHES_AT_90C770E = [
    (["task=sst2"], "36be190b"),
    (["task=mnli"], "26602cb1"),
    (["task=qnli"], "0b98ad91"),
    (["task=qqp"], "ecd3bcf6"),
    (["task=cola"], "8d608613"),
    (["task=rte"], "8bf75242"),
    (["task=mrpc"], "253ff609"),
    (["task=stsb"], "bf0b8922"),
    (["task=squad"], "41afdf74"),
    (["experiment=glue_small_s95", "model.pretrained=bert-base-uncased"], "820f59cd"),
    (["experiment=glue_large_s60", "model.pretrained=bert-base-uncased"], "e61ad47a"),
    (["experiment=squad_s60", "model.pretrained=bert-base-uncased"], "ffda6c81"),
    (["experiment=repro_sst2_cpu", "model.pretrained=bert-base-uncased"], "ebfe7bb6"),
    (["experiment=study_sst2_cpu", "model.pretrained=bert-base-uncased"], "3b132aa4"),
]


@pytest.mark.parametrize(("overrides", "expected"), HASHES_AT_90C770E)
def test_identity_hash_is_unchanged(compose_train, overrides, expected):
    assert config_hash(compose_train(overrides)) == expected


def test_task_metrics_and_splits_in_the_identity_come_from_the_registry(compose_train):
    identity = config_identity(compose_train(["task=mnli"]))
    assert identity["task.eval_splits"] == list(TASKS["mnli"].eval_splits)
    assert identity["task.eval_names"] == ["mnli_m", "mnli_mm"]
    assert identity["task.main_metric"] == "accuracy" and identity["task.metrics"] == ["accuracy"]
