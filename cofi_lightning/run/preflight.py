"""Checks at the door: everything a run will need exists and fits, before any stage starts.

This file owns the checks that need the file system, the Hugging Face cache or the data's size
rather than the config alone (those live in ``cofi_lightning.config``): model, tokenizer and teacher
sources (a hub name that cannot be fetched is refused at once with the places looked in), the data
splits, the encoder family, a teacher that fits the student (of its very shape where the prune
stage starts from it or from its importance), the prune stage's length, the latency table,
``export.push_to_hub``, the ``deploy`` extra of ``export.onnx`` and a SLURM sweep's tasks per
device. Every failure is one line naming the key and the value.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cofi_lightning.config import TrainConfig
from cofi_lightning.config.checks import ConfigError
from cofi_lightning.config.resolvers import looked_for
from cofi_lightning.config.stage_configs import stage_total, steps_per_epoch
from cofi_lightning.data import DataError, get_task, shared_dir
from cofi_lightning.data.sources import local_path, prepare_hint, train_rows

log = logging.getLogger(__name__)

#: Seconds the hub probe waits for an answer.
HUB_PROBE_TIMEOUT_S = 3.0


class ModelSourceError(ValueError):
    """A model or tokenizer setting names nothing usable; the message starts with the key."""


def _hub_config(name: str) -> Path | None:
    """``config.json`` of a hub model in the local HF cache, if there."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(name, "config.json")
    return Path(hit) if isinstance(hit, str) else None


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be used, or None when it answers (one HEAD request
    without retries: the libraries' own retry loops take half a minute to say the same)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    return _probe(constants.ENDPOINT)


@functools.cache
def _probe(endpoint: str) -> str | None:
    """One HEAD request to ``endpoint`` per process: None if it answers, else why not."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001  (any failure means: no hub for this run)
        return f"the hub {endpoint} is unreachable ({type(err).__name__}: {err})"
    return None


def _shared_note() -> str:
    env = os.environ.get("COFI_SHARED_DIR")
    return f"COFI_SHARED_DIR={env}" if env else "COFI_SHARED_DIR unset, so <repo>/../shared"


def check_source(key: str, value: str, need: str | None = "config.json") -> dict[str, Any] | None:
    """Check one model setting (a directory or a hub name); return its ``config.json`` content
    when it can be read locally (``need``: the file a directory must hold; None for tokenizers).

    Raises:
        ModelSourceError: naming the key, the value and, for a hub name that cannot be fetched,
            every place looked in.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        if need is not None and not (path / need).is_file():
            raise ModelSourceError(f"{key}={value} is a directory without {need}")
        config = path / "config.json"
        return json.loads(config.read_text()) if config.is_file() else None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") > 1
    try:
        if looks_like_path:
            raise HFValidationError("a path")
        validate_repo_id(value)
    except HFValidationError:
        raise ModelSourceError(
            f"{key}={value} is neither an existing directory nor a Hugging Face hub name "
            f"(no directory {path.resolve()}; hub names look like 'bert-base-uncased' or "
            "'org/name')"
        ) from None
    cached = _hub_config(value)
    if cached is not None:
        return json.loads(cached.read_text())
    reason = hub_unreachable()
    if reason is None:
        return None  # the hub answers when the stage loads it
    from huggingface_hub.constants import HF_HUB_CACHE

    local = looked_for(value)
    places = [f"the directory {local} ({_shared_note()})"] if local else []
    places += [f"the Hugging Face cache {HF_HUB_CACHE}"]
    raise ModelSourceError(
        f"{key}={value}: {reason} and no local copy was found (looked in {'; '.join(places)}). "
        f"Set COFI_SHARED_DIR to the folder holding models/ and data/, point {key} at a local "
        "model directory, or run where the hub is reachable (huggingface-cli download fills "
        "the cache)."
    )


def _pruned(config: dict[str, Any]) -> bool:
    """A CoFi config whose layers keep fewer heads or FFN dims than the architecture has."""
    heads, ffn = config.get("num_heads"), config.get("intermediate_sizes")
    full_heads, full_ffn = config.get("num_attention_heads"), config.get("intermediate_size")
    return any(n != full_heads for n in heads or ()) or any(m != full_ffn for m in ffn or ())


def check_family(key: str, value: str, config: dict[str, Any]):
    """The encoder family of a model's ``config.json`` (else :class:`ModelSourceError`)."""
    from cofi_lightning.modeling import UnsupportedModelError, family_of

    try:
        return family_of(str(config.get("model_type")))
    except UnsupportedModelError as err:
        raise ModelSourceError(f"{key}={value}: {err}") from None


def check_teacher_fits(student: dict[str, Any], teacher: dict[str, Any], mapping: str) -> None:
    """A teacher that layer distillation can use with this student: the same family, the same
    hidden size (one ``[H, H]`` projection), unpruned and deep enough for the fixed mapping."""
    families = [check_family(k, "", c) for k, c in (("model", student), ("teacher", teacher))]
    if families[0] != families[1]:
        raise ModelSourceError(
            f"distill.teacher is a {families[1].name} model and model.pretrained a "
            f"{families[0].name} one; the teacher is loaded with the student's classes: "
            "fine-tune the teacher from model.pretrained (or train one: distill.teacher=null)"
        )
    depths = [c.get("num_hidden_layers") for c in (teacher, student)]
    shapes = (
        f"teacher hidden {teacher.get('hidden_size')} x {depths[0]} layers, student hidden "
        f"{student.get('hidden_size')} x {depths[1]} layers"
    )
    if teacher.get("hidden_size") != student.get("hidden_size"):
        raise ModelSourceError(
            f"distill.teacher cannot be distilled into model.pretrained: {shapes}; the layer loss "
            "projects student states onto teacher states of the same hidden size. Use a teacher "
            "fine-tuned from model.pretrained (or train one: distill.teacher=null)."
        )
    if _pruned(teacher):
        raise ModelSourceError(
            f"distill.teacher is a pruned model ({shapes}; heads per layer "
            f"{teacher.get('num_heads')}, FFN sizes {teacher.get('intermediate_sizes')}); "
            "distil from the unpruned fine-tuned teacher (its <run>/teacher/model)."
        )
    if mapping == "fixed" and (depths[0] or 0) > (depths[1] or 0):
        raise ModelSourceError(
            f"distill.layer_mapping=fixed needs a student at least as deep as the teacher: {shapes}"
        )


def check_student_from_teacher(cfg: TrainConfig, student: dict | None, teacher: dict | None):
    """``pruning.method=posttrain``, ``pruning.student_init=teacher`` and
    ``pruning.mask_init=posttrain`` (its importance) need the fine-tuned teacher: there is one
    (distillation on: the teacher stage trains it, or ``distill.teacher``), and a given one has
    ``model.pretrained``'s shape (the finetune stage builds the student from ``model.pretrained``'s
    config, and the warm-started gates are the student's; its family is checked by
    :func:`check_teacher_fits`).

    Raises:
        ConfigError: naming the keys.
    """
    p = cfg.pruning
    uses = {
        "pruning.method=posttrain": p.method == "posttrain",
        "pruning.student_init=teacher": p.student_init == "teacher",
        "pruning.mask_init=posttrain": p.mask_init == "posttrain",
    }
    key = next((key for key, used in uses.items() if used), None)
    if "prune" not in cfg.stages or key is None:
        return
    if not cfg.distill.enabled:
        raise ConfigError(
            f"{key} needs the fine-tuned teacher, but distill.enabled=false leaves no teacher: "
            "set distill.enabled=true (the teacher stage fine-tunes one, or give distill.teacher)"
        )
    if student is None or teacher is None:
        return
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    differ = [
        f"{k} {teacher.get(k)} vs {student.get(k)}"
        for k in keys
        if teacher.get(k) != student.get(k)
    ]
    if differ:
        raise ConfigError(
            f"{key}: distill.teacher={cfg.distill.teacher} and model.pretrained="
            f"{cfg.model.pretrained} differ in shape ({'; '.join(differ)}); use a teacher "
            "fine-tuned from model.pretrained"
        )


def _weight_names(directory: Path) -> set[str] | None:
    """Tensor names of a checkpoint directory from its safetensors header or index (None: no
    safetensors file)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text()).get("weight_map", {}))
    file = directory / "model.safetensors"
    if not file.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        return set(f.keys())


def _local_dir(value: str) -> Path | None:
    """The directory of a model setting, or its snapshot in the HF cache (None: neither here)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    cached = _hub_config(value) if not value.startswith((".", "/", "~")) else None
    return cached.parent if cached is not None else None


def check_teacher_head(value: str, teacher: dict[str, Any], task_name: str) -> None:
    """``distill.teacher`` is fine-tuned for the task: its checkpoint holds the task head
    (without it the head is initialised at random and the whole run distils noise)."""
    directory = _local_dir(value)
    names = _weight_names(directory) if directory is not None else None
    if names is None:
        return  # not stored as safetensors here: loading reports what it initialises
    task = get_task(task_name)
    family = check_family("distill.teacher", value, teacher)
    prefixes = family.model_class(task.family == "squad").task_head_prefixes()
    missing = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if missing:
        raise ModelSourceError(
            f"distill.teacher={value} is not fine-tuned for {task.name}: its weights have no "
            f"task head ({', '.join(p + '*' for p in missing)}), so it would be initialised at "
            "random, score at chance and the run would distil noise. Use a teacher fine-tuned "
            f"on {task.name} (e.g. <run>/teacher/model), or distill.teacher=null to train one."
        )


def _world_size(trainer: dict[str, Any]) -> int | None:
    """Processes the trainer config starts (None when only Lightning can tell, e.g. all GPUs)."""
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    if isinstance(devices, list | tuple):
        count = len(devices)
    elif isinstance(devices, int) and devices > 0:
        count = devices
    elif isinstance(devices, str) and devices.isdigit() and int(devices) > 0:
        count = int(devices)
    elif devices == "auto" and trainer.get("accelerator") == "cpu":
        count = 1  # Lightning's CPU accelerator: one process
    else:
        return None
    return count * nodes if isinstance(nodes, int) and nodes > 0 else None


def check_slurm_tasks(launcher: dict[str, Any], trainer: dict[str, Any]) -> None:
    """A SLURM job starts one process per device (``srun`` starts ``tasks_per_node`` x
    ``nodes``; Lightning would refuse any other count inside the job, after it was queued)."""
    tasks, nodes = launcher.get("tasks_per_node", 1), launcher.get("nodes", 1)
    world = _world_size(trainer)
    if world is not None and tasks * nodes != world:
        raise ConfigError(
            f"hydra.launcher.tasks_per_node={tasks} (x nodes={nodes}) but trainer.devices="
            f"{trainer.get('devices')} (x num_nodes={trainer.get('num_nodes', 1)}): SLURM starts "
            "one process per task and Lightning needs one per device; set "
            "hydra.launcher.tasks_per_node to trainer.devices (and gpus_per_node on GPUs)"
        )


class SlurmTasksCheck(Callback):
    """:func:`check_slurm_tasks` before a SLURM sweep submits anything (a Hydra callback).

    Hydra turns a callback's exception into a warning and goes on, so a refusal is logged and
    ends the process with status 1 (``SystemExit`` passes through Hydra).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_slurm_tasks(config.hydra.launcher, config.trainer)
        except ConfigError as err:
            log.error("ConfigError: %s", err)
            sys.exit(1)


def check_prune_length(cfg: TrainConfig) -> None:
    """The prune stage reaches its last target before it ends (``PruningConfig.check_fits``),
    epochs converted with the training set's size (known without tokenizing; SQuAD's windows
    are not: its stage checks for itself)."""
    p, dm = cfg.pruning, cfg.task.datamodule
    if "prune" not in cfg.stages or p.method != "cofi":
        return
    rows = train_rows(get_task(cfg.task.name), dm.get("data_dir"), dm.get("limit_train_samples"))
    world, batch = _world_size(cfg.trainer), dm.get("batch_size")
    if rows is None or world is None or batch is None:
        return
    limit = cfg.trainer.get("limit_train_batches")
    per_epoch = steps_per_epoch(
        rows, batch, world, limit, cfg.trainer.get("accumulate_grad_batches") or 1
    )
    total = stage_total(per_epoch, p.epochs, p.max_steps)
    shards = f" / {world} processes" if world > 1 else ""
    how = f"pruning.epochs={p.epochs} x {per_epoch} steps: {rows} training examples{shards}"
    how += f" / batch {batch}" + (f"; pruning.max_steps={p.max_steps}" if p.max_steps > 0 else "")
    p.check_fits(per_epoch, total, how)


def check_latency(cfg: TrainConfig, student: dict[str, Any] | None, run_dir: Path | None) -> None:
    """``pruning.constraint=latency`` can run: the family is supported and an existing latency
    table fits the model and allows ``pruning.target_speedup`` (a missing one is profiled by the
    prune stage, which then checks it with the same function)."""
    from cofi_lightning.core.constraint import check_latency_family, load_latency_table

    p = cfg.pruning
    if p.constraint != "latency" or not {"prune", "export"} & set(cfg.stages):
        return
    if student is not None:
        check_latency_family(check_family("model.pretrained", cfg.model.pretrained, student))
    default = None if run_dir is None else Path(run_dir) / "prune" / "latency_table.json"
    path = Path(p.latency_table) if p.latency_table else default
    if path is not None and path.is_file():
        load_latency_table(path, student, float(p.target_speedup), "hidden" in p.units)


def check_push(cfg: TrainConfig) -> None:
    """``export.push_to_hub`` names a valid repository for every operating point (a missing
    token is only warned about: the upload can be retried by re-running the command)."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from cofi_lightning.run.hub import repo_ids
    from cofi_lightning.run.operating_points import operating_points

    repo = cfg.export.push_to_hub
    if not repo:
        return
    for name in repo_ids(str(repo), operating_points(cfg.pruning.target_list)):
        try:
            validate_repo_id(name)
        except HFValidationError as err:
            raise ConfigError(
                f"export.push_to_hub={repo}: {name!r} is not a hub repository id ({err}); use "
                "'<user or org>/<name>'"
            ) from None
    if get_token() is None:
        log.warning(
            "export.push_to_hub=%s: no Hugging Face token here (hf auth login or HF_TOKEN); "
            "the upload at the end will fail, the export stays local",
            repo,
        )


#: What ``export.onnx``, ``python -m cofi_lightning.deploy`` and the bench's ``runtime=ort*``
#: need installed (``[project.optional-dependencies] deploy`` in pyproject.toml).
DEPLOY_EXTRA = 'pip install -e ".[deploy]"'


def check_deploy_extra(key: str) -> None:
    """The deploy extra imports: ONNX, ONNX Runtime and onnxscript (torch's ONNX exporter's)
    (``key``: the setting or command that asked for them).

    Raises:
        ConfigError: one line naming the key, the missing module and the extra to install.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        missing = err.name or str(err)
        raise ConfigError(
            f"{key} needs the deploy extra ({missing} is not installed): {DEPLOY_EXTRA}"
        ) from None


def _datasets_cache(task) -> Path:
    import datasets

    folder = task.hub_path.replace("/", "___")
    return Path(datasets.config.HF_DATASETS_CACHE) / folder / (task.hub_config or "default")


def check_data(cfg: TrainConfig) -> None:
    """Every split the run reads is in the local mirror, or the hub can serve it (reachable, or
    its dataset is in the ``datasets`` cache)."""
    dm = cfg.task.datamodule
    task = get_task(cfg.task.name)
    trains = {"teacher", "prune", "finetune"} & set(cfg.stages)
    data_dir, use_hub = dm.get("data_dir"), dm.get("use_hub", True)
    for split in task.splits if trains else task.eval_splits:
        if data_dir is not None and local_path(data_dir, task, split).is_file():
            continue
        reason = hub_unreachable() if use_hub else "task.datamodule.use_hub is false"
        cache = _datasets_cache(task)
        if reason is None or (use_hub and cache.is_dir()):
            continue  # the hub, or the datasets library's copy of it, serves the split
        mirror = (
            f"the local mirror {local_path(data_dir, task, split)}"
            if data_dir is not None
            else f"no local mirror (COFI_DATA_DIR unset; {Path(shared_dir()) / 'data'} does not "
            f"exist: {_shared_note()})"
        )
        raise DataError(
            f"task.datamodule.data_dir: split {split!r} of task {task.name!r} was not found. "
            f"Looked in {mirror}; the Hugging Face hub {task.hub_path} ({reason}) and the "
            f"datasets cache {cache}. Set COFI_DATA_DIR or COFI_SHARED_DIR to a mirror; "
            + prepare_hint(task).removeprefix("To fix: ")
        )


def preflight(cfg: TrainConfig, run_dir: str | Path | None = None) -> None:
    """Run every check of this file on a config, before the run directory is touched (where a
    latency table profiled by an earlier attempt may be)."""
    student = check_source("model.pretrained", cfg.model.pretrained)
    if student is not None:
        check_family("model.pretrained", cfg.model.pretrained, student)
    if cfg.model.tokenizer != cfg.model.pretrained:
        check_source("model.tokenizer", cfg.model.tokenizer, need=None)
    teacher = None
    if cfg.distill.enabled and cfg.distill.teacher is not None:
        teacher = check_source("distill.teacher", cfg.distill.teacher)
        if teacher is not None:
            check_teacher_head(cfg.distill.teacher, teacher, cfg.task.name)
        if student is not None and teacher is not None:
            check_teacher_fits(student, teacher, cfg.distill.layer_mapping)
    check_student_from_teacher(cfg, student, teacher)
    check_data(cfg)
    check_prune_length(cfg)
    check_latency(cfg, student, None if run_dir is None else Path(run_dir))
    check_push(cfg)
    if cfg.export.onnx and "export" in cfg.stages:
        check_deploy_extra("export.onnx=true")
