"""The export's model card: metadata that round-trips through huggingface_hub, and the facts."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard

from cofi_lightning.data.tasks import get_task
from cofi_lightning.run.model_card import build_card, refresh_card

RESULTS = {
    "task": "sst2",
    "target_sparsity": 0.6,
    "sparsity": 0.6031,
    "params": {"unpruned": 10_621_440, "pruned": 4_215_552},
    "structure": {"hidden_size": 380, "num_heads": [12, 5, 0], "intermediate_sizes": [700, 0, 9]},
    "pruned": {"accuracy": 86.8119},
    "teacher": {"accuracy": 88.7615},
    "main_metric": "accuracy",
}


def test_card_metadata_round_trips(tmp_path):
    card = build_card(
        task=get_task("sst2"),
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        results=RESULTS,
        config_yaml="seed: 57\npruning:\n  target_sparsity: 0.6\n",
    )
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.datasets == ["nyu-mll/glue"]
    assert data.pipeline_tag == "text-classification" and data.library_name == "transformers"
    assert {"cofi", "pruning", "sst2"} <= set(data.tags)
    (result,) = data.eval_results
    assert (result.metric_type, result.metric_value) == ("accuracy", 86.8119)
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == (
        "nyu-mll/glue",
        "sst2",
        "validation",
    )
    text = (tmp_path / "README.md").read_text()
    assert "| 1 | 5 | 0 | 380 |" in text  # layer 1: 5 heads, FFN removed
    assert "4,215,552 of 10,621,440" in text and "0.6031" in text and "teacher 88.76" in text
    assert "trust_remote_code=True" in text and "target_sparsity: 0.6" in text
    assert "Not measured yet" in text


def test_a_local_base_model_gives_its_license_and_no_hub_id(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a model\n")
    card = build_card(task=get_task("mnli"), base_model=str(base), results=RESULTS, config_yaml="")
    assert card.data.license == "apache-2.0" and card.data.base_model is None
    assert f"`{base}`" in card.content


def test_refresh_adds_the_measured_speed(tmp_path):
    run = tmp_path / "run"
    (run / "pruned_model").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(RESULTS))
    (run / "config.yaml").write_text("model:\n  pretrained: some/model\n")
    speed = {"device": "cpu", "device_name": "EPYC", "threads": 2, "dtype": "fp32", "batch": 32}
    (run / "speed_cpu_fp32.json").write_text(json.dumps({**speed, "seq": 128, "speedup": 2.345}))
    refresh_card(run)
    text = (run / "pruned_model" / "README.md").read_text()
    assert "| EPYC (2 threads) | fp32 | 32 × 128 | 2.35× |" in text
    assert ModelCard.load(run / "pruned_model" / "README.md").data.base_model == "some/model"


def test_a_latency_run_states_its_speed_target_not_a_parameter_target():
    latency = {"target_speedup": 2.0, "table_speedup": 2.02, "table_device": "AMD EPYC"}
    card = build_card(
        task=get_task("sst2"),
        base_model="m",
        results={**RESULTS, "latency": latency},
        config_yaml="",
    )
    assert "| target speedup (latency table of AMD EPYC) | 2× (table: 2.02×) |" in str(card)
    assert "| target sparsity |" not in str(card)
