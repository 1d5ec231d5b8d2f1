"""Where the two benchmarked models come from: model dirs, run dirs, hub names or a synthetic pair.

Both are loaded with the pruned model's ``CoFiBert*`` class, so they run the same code and are
counted with one formula (a vanilla Hugging Face BERT converts on loading). A run dir names both:
its export and its ``model.pretrained``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig

from cofi_lightning.core.masks import Masks
from cofi_lightning.latency.timing import BenchError
from cofi_lightning.modeling import (
    CheckpointMismatchError,
    CoFiBertConfig,
    CoFiBertForSequenceClassification,
    CoFiBertPreTrainedModel,
    UnsupportedModelError,
    family_of,
)
from cofi_lightning.run.operating_points import OperatingPoint

#: BERT-base shape and a CoFi-like structure at ~95% encoder sparsity (upper layers pruned hardest,
#: six sublayers removed), shaped like the paper's published s95 models.
BERT_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)
S95_HEADS = [3, 2, 2, 2, 1, 1, 1, 0, 1, 0, 0, 0]
S95_FFN = [380, 260, 200, 140, 90, 60, 40, 0, 30, 0, 20, 90]
S95_HIDDEN = 704


@dataclass
class Sources:
    """The two models to compare (a directory, or a hub name for the baseline) and the run dir
    and task they came from, if any (``squad`` selects sequence length 384)."""

    pruned: str
    baseline: str
    task: str | None = None
    run_dir: str | None = None


def _run_config(run_dir: Path):
    """The run's composed config: ``config.yaml`` (resolved, written by ``train``) or Hydra's."""
    import cofi_lightning.config  # noqa: F401  (registers the resolvers Hydra's copy uses)

    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.is_file():
            return OmegaConf.load(path)
    return None


def _resolve_pretrained(name: str, run_dir: Path) -> str:
    """A path as written in a run's config, tried from the cwd, the run's launch dir and the run."""
    path = Path(name).expanduser()
    candidates = [path]
    if not path.is_absolute():
        hydra_file = run_dir / ".hydra" / "hydra.yaml"
        if hydra_file.is_file():
            launch = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.cwd")
            if launch:
                candidates.append(Path(launch) / path)
        candidates.append(run_dir / path)
    for candidate in candidates:
        if candidate.is_dir():
            return str(candidate)
    # "org/name" or "name" that is no local path: a hub name (from_pretrained reports if it isn't)
    if not name.startswith((".", "/", "~")) and name.count("/") <= 1:
        return name
    tried = ", ".join(str(c) for c in candidates)
    raise BenchError(
        f"the run's model.pretrained={name!r} was not found (tried {tried}); pass baseline=<dir>"
    )


RUN_FILES = ("results.json", "config.yaml", ".hydra/config.yaml")
EXPORT = OperatingPoint(None)  # a single-target run's export (a path's: one run per point)


def _is_run_dir(path: Path) -> bool:
    return not (path / "config.json").is_file() and (
        EXPORT.export_dir(path).is_dir() or any((path / f).is_file() for f in RUN_FILES)
    )


def discover(
    pruned: str | None = None, baseline: str | None = None, run: str | None = None
) -> Sources:
    """Fill in what the user left out from a run dir: ``run=<run_dir>``, or ``pruned=`` a run dir
    or its export without ``baseline``, gives both models."""
    if run is None and pruned is not None:
        path = Path(pruned).expanduser()
        if not path.exists():
            raise BenchError(f"pruned={pruned}: no such directory")
        if _is_run_dir(path):  # a run dir given as pruned=
            run, pruned = pruned, None
        elif baseline is None:
            _check_model_dir(path, "pruned")
            if not _is_run_dir(path.parent):
                raise BenchError(
                    f"no baseline: pruned={pruned} is not inside a run dir (no results.json or "
                    "config.yaml beside it); pass baseline=<dir or hub name>"
                )
            run = str(path.parent)
    if run is None:  # pruned= and baseline= given
        return Sources(pruned=str(pruned), baseline=str(baseline))

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise BenchError(f"run={run}: no such directory")
    results_file = run_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    cfg = _run_config(run_dir)
    task = results.get("task") or (OmegaConf.select(cfg, "task.name") if cfg else None)
    if pruned is None:
        export = EXPORT.export_dir(run_dir)
        if not export.is_dir():
            raise BenchError(
                f"run={run} has no exported model ({export} is missing; the export stage writes "
                "it): pass pruned=<model dir>"
            )
        pruned = str(export)
    if baseline is None:
        name = cfg and OmegaConf.select(cfg, "model.pretrained", throw_on_resolution_failure=False)
        if not name:
            raise BenchError(
                f"run={run}: no config.yaml or .hydra/config.yaml with model.pretrained; "
                "pass baseline=<dir or hub name>"
            )
        baseline = _resolve_pretrained(str(name), run_dir)
    return Sources(pruned=str(pruned), baseline=str(baseline), task=task, run_dir=str(run_dir))


def _check_model_dir(path: Path, role: str) -> None:
    if not (path / "config.json").is_file():
        raise BenchError(
            f"{role}={path} is not a Hugging Face model dir (no config.json); expected e.g. "
            "<run_dir>/pruned_model, or run=<run_dir>"
        )


def _config_of(source: str, role: str):
    """The config of a model dir or hub name, and its encoder family (one CoFi prunes)."""
    path = Path(source).expanduser()
    if path.exists():
        _check_model_dir(path, role)
    elif source.startswith((".", "/", "~")):
        raise BenchError(f"{role}={source}: no such directory")
    try:
        config = AutoConfig.from_pretrained(source)
        return config, family_of(config.model_type)
    except UnsupportedModelError as err:
        raise BenchError(f"{role}={source}: {err}") from None
    except (OSError, ValueError) as err:
        raise BenchError(f"{role}={source} could not be loaded: {err}") from err


def load_pair(sources: Sources) -> tuple[CoFiBertPreTrainedModel, CoFiBertPreTrainedModel]:
    """Load ``(pruned, baseline)`` in eval mode, fp32 on CPU, both of the pruned model's class
    (question answering or not, from its ``architectures``)."""
    config, family = _config_of(sources.pruned, "pruned")
    _config_of(sources.baseline, "baseline")  # before minutes of loading
    cls = family.model_class("QuestionAnswering" in " ".join(config.architectures or []))
    loaded = []
    # a vanilla checkpoint without this task's head gets a fresh one (its label count does not
    # matter here: the head is a [B, H] x [H, labels] product)
    for role, src in (("pruned", sources.pruned), ("baseline", sources.baseline)):
        try:
            loaded.append(cls.from_pretrained(src).eval())
        except (CheckpointMismatchError, OSError, ValueError) as err:
            raise BenchError(f"{role}={src} does not load as a {cls.__name__}: {err}") from err
    return loaded[0], loaded[1]


def structure_masks(config, heads: list[int], ffn: list[int], hidden: int) -> Masks:
    """Binary masks of a uniform model keeping the first ``heads[l]`` heads and ``ffn[l]`` FFN
    dimensions of layer ``l`` and the first ``hidden`` hidden dimensions (weights are random
    in a synthetic model, so which units are kept does not matter)."""
    layers = config.num_hidden_layers
    head = torch.zeros(layers, config.num_attention_heads)
    intermediate = torch.zeros(layers, config.intermediate_size)
    for layer, (n, m) in enumerate(zip(heads, ffn, strict=True)):
        head[layer, :n] = 1
        intermediate[layer, :m] = 1
    hidden_mask = torch.zeros(config.hidden_size)
    hidden_mask[:hidden] = 1
    return Masks(hidden=hidden_mask, head=head, intermediate=intermediate)


def synthetic_pair(seed: int = 0) -> tuple[CoFiBertPreTrainedModel, CoFiBertPreTrainedModel]:
    """``(s95, dense)``: BERT-base with random weights and its ~95%-sparse pruned copy (latency
    depends only on shapes)."""
    torch.manual_seed(seed)
    dense = CoFiBertForSequenceClassification(CoFiBertConfig(**BERT_BASE)).eval()
    masks = structure_masks(dense.config, S95_HEADS, S95_FFN, S95_HIDDEN)
    return dense.prune(masks).eval(), dense
