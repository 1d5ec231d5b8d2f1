"""The model card (``README.md``) of an exported model: what it is, how it was made, how to load it.

The export stage writes it; ``python -m cofi_lightning.tools.bench run=<dir>`` rewrites it with the
speed it measured and ``python -m cofi_lightning.deploy run=<dir>`` with its runtimes
(:func:`refresh_card`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from cofi_lightning.data.tasks import TaskSpec
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.run.results import point_label, result_points

PAPER = "https://arxiv.org/abs/2204.00408"


def _base_model(source: str) -> tuple[str | None, str | None]:
    """``(hub id or None, license or None)`` of the pruned model's source (a local directory's
    license is read from its own card)."""
    path = Path(source)
    if path.exists():
        card = path / "README.md"
        license_ = ModelCard.load(card).data.license if card.is_file() else None
        return None, license_
    return source, None


def _metric_rows(task: TaskSpec, metrics: dict[str, float]) -> list[EvalResult]:
    rows = []
    for key, value in sorted(metrics.items()):
        split_name, _, metric = key.rpartition("/")
        split = task.eval_splits[0]
        if split_name in task.eval_names:
            split = task.eval_splits[task.eval_names.index(split_name)]
        rows.append(
            EvalResult(
                task_type="question-answering" if task.family == "squad" else "text-classification",
                dataset_type=task.hub_path,
                dataset_name=f"{task.hub_path} {task.name}".strip(),
                dataset_config=task.hub_config,
                dataset_split=split,
                metric_type=metric,
                metric_name=key,
                metric_value=round(float(value), 4),
            )
        )
    return rows


def _structure_table(structure: dict[str, Any]) -> str:
    lines = ["| layer | heads | FFN width | hidden size |", "|---|---|---|---|"]
    for r in Structure.from_dict(structure).rows():
        lines.append(f"| {r['layer']} | {r['heads']} | {r['ffn_dims']} | {r['hidden']} |")
    return "\n".join(lines)


def _speed_text(speeds: list[dict[str, Any]]) -> str:
    if not speeds:
        return (
            "Not measured yet: `python -m cofi_lightning.tools.bench run=<run dir>` measures it "
            "and rewrites this card."
        )
    lines = [
        "| device | dtype | batch × seq | speedup over the unpruned model |",
        "|---|---|---|---|",
    ]
    for s in speeds:
        device = s.get("device_name") or s.get("device", "?")
        if s.get("device") == "cpu" and s.get("threads"):
            device += f" ({s['threads']} threads)"
        lines.append(
            f"| {device} | {s.get('dtype', '?')} | {s.get('batch', '?')} × {s.get('seq', '?')} "
            f"| {float(s.get('speedup', float('nan'))):.2f}× |"
        )
    return "\n".join(lines)


def _runtime_text(runtimes: list[dict[str, Any]], main: str) -> str:
    """The export through each runtime (``export.onnx``): metric, file size and latency."""
    if not runtimes:
        return ""
    lines = [
        "## Runtimes",
        "",
        f"| runtime | file | {main} | size (MB) | latency (ms) | batch × seq, CPU threads |",
        "|---|---|---|---|---|---|",
    ]
    for r in runtimes:
        metric = r["metrics"].get(main, float("nan"))
        lines.append(
            f"| {r['runtime']} | `{r['file']}` | {metric:.2f} | {r['size_mb']:.2f} "
            f"| {r['latency_ms']:.2f} | {r['batch']} × {r['seq']}, {r['threads']} |"
        )
    from cofi_lightning.deploy.runtime import SLOW_FUSIONS

    lines.append(
        "\nONNX Runtime loads `model.onnx` (fp32) or `model.int8.onnx` (dynamic INT8); the "
        f"latencies were measured with `disabled_optimizers={json.dumps(list(SLOW_FUSIONS))}` "
        "(its fused kernel is slower on CPU).\n"
    )
    return "\n".join(lines) + "\n"


def build_card(
    *,
    task: TaskSpec,
    base_model: str,
    results: dict[str, Any],
    config_yaml: str,
    speeds: list[dict[str, Any]] | None = None,
) -> ModelCard:
    """The card of an export.

    Args:
        base_model: ``model.pretrained`` (hub id or local directory).
        results: The operating point's flat ``results.json`` record (``flat_points``).
        config_yaml: The resolved config that produced it.
        speeds: The run's ``speed_*.json`` records, if any.
    """
    hub_id, license_ = _base_model(base_model)
    pruned = results.get("pruned") or {}
    data = ModelCardData(
        base_model=hub_id,
        datasets=[task.hub_path],
        pipeline_tag="question-answering" if task.family == "squad" else "text-classification",
        library_name="transformers",
        license=license_,
        tags=["cofi", "pruning", "structured-pruning", "distillation", task.name],
        model_name=f"cofi-{task.name}-{point_label(results)}",
        eval_results=_metric_rows(task, pruned) or None,
    )
    params = results["params"]
    main = results["main_metric"]
    latency = results.get("latency") or {}
    target_row = (  # a latency-constrained run has a speed target, not a parameter target
        f"| target speedup (latency table of {latency.get('table_device')}) | "
        f"{latency['target_speedup']:g}× (table: {latency.get('table_speedup', 0):.2f}×) |"
        if latency.get("target_speedup")
        else f"| target sparsity | {results['target_sparsity']:g} |"
    )
    teacher = (results.get("teacher") or {}).get(main)
    teacher_text = f"{teacher:.2f}" if teacher is not None else "not recorded"
    source = f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else f"`{base_model}`"
    head = "QuestionAnswering" if task.family == "squad" else "SequenceClassification"
    content = f"""---
{data.to_yaml()}
---

# CoFi-pruned {task.name} model ({100 * results["sparsity"]:.1f}% encoder sparsity)

{source} pruned with CoFi ([Xia, Zhong & Chen, ACL 2022]({PAPER})) by cofi-lightning: hard-concrete
masks over heads, attention layers, FFN dimensions, FFN layers and hidden dimensions, learned with
distillation from a fine-tuned teacher and a Lagrangian sparsity constraint, then physically removed
and the compact model fine-tuned.

| | |
|---|---|
{target_row}
| encoder sparsity (counted on this model's tensors) | {results["sparsity"]:.4f} |
| encoder parameters | {params["pruned"]:,} of {params["unpruned"]:,} |
| {main} (validation) | {pruned.get(main, float("nan")):.2f} (teacher {teacher_text}) |

## Structure

{_structure_table(results["structure"])}

![structure](structure.png)

## Speed

{_speed_text(speeds or [])}

{_runtime_text(results.get("runtimes") or [], main)}## Loading

```python
# with cofi-lightning installed
import cofi_lightning  # registers the classes
from transformers import AutoModelFor{head}, AutoTokenizer
model = AutoModelFor{head}.from_pretrained("<this folder or repo>")
tokenizer = AutoTokenizer.from_pretrained("<this folder or repo>")

# without it: the modeling code ships with the model
model = AutoModelFor{head}.from_pretrained("<this folder or repo>", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("<this folder or repo>", trust_remote_code=True)
```

## Config that produced it

```yaml
{config_yaml.strip()}
```
"""
    return ModelCard(content)


def write_card(
    export_dir: Path, run_dir: Path, task: TaskSpec, base_model: str, results: dict, point
) -> ModelCard:
    """Write ``<export_dir>/README.md`` and its ``structure.png`` for an operating point."""
    export_dir, run_dir = Path(export_dir), Path(run_dir)
    config = run_dir / "config.yaml"
    speeds = [json.loads(p.read_text()) for p in point.speed_files(run_dir)]
    card = build_card(
        task=task,
        base_model=base_model,
        results=results,
        config_yaml=config.read_text() if config.is_file() else "(not recorded)",
        speeds=speeds,
    )
    plot = point.structure_plot(run_dir)
    if plot.is_file():
        shutil.copyfile(plot, export_dir / "structure.png")
    card.save(export_dir / "README.md")
    return card


def refresh_card(run_dir: Path) -> list[ModelCard]:
    """Rewrite a finished run's export cards (e.g. after the bench wrote a ``speed_*.json``), one
    per operating point; empty when the run has no results or config."""
    from omegaconf import OmegaConf

    from cofi_lightning.data.tasks import get_task

    run_dir = Path(run_dir)
    results, config = run_dir / "results.json", run_dir / "config.yaml"
    if not (results.is_file() and config.is_file()):
        return []
    cfg = OmegaConf.load(config)
    data = json.loads(results.read_text())
    cards = []
    for point, record in result_points(data):
        export = point.export_dir(run_dir)
        if export.is_dir():
            task = get_task(record["task"])
            base = str(cfg.model.pretrained)
            cards.append(write_card(export, run_dir, task, base, record, point))
    return cards
