"""An on-disk cache of the frozen teacher's outputs on the training set (``distill.teacher_cache``).

The teacher is frozen and deterministic, so its logits and distilled states on a training example
are the same at every step of every job: computing them once saves a teacher forward per step.
Layout of ``<cache_dir>/teacher_outputs/<key>/`` (``key``: a hash of the teacher's weights, the
features' cache key, the distilled layers and the format version, so nothing stale is served):

* ``logits.npy`` ``[N, C]`` float16; ``offsets.npy`` ``[N + 1]`` int64;
* ``hidden.npy`` ``[T, n_t, H]`` float16: the distilled layers' states of every real token, example
  i at rows ``offsets[i]:offsets[i + 1]`` (padding carries no weight with
  ``distill.layer_loss_tokens=real``, so it is not stored);
* ``meta.json``, written last, records each file's size and CRC-32: a damaged entry is rebuilt (or
  refused with one line), never served.

Builds go to ``<key>.tmp-<host>-<pid>`` renamed into place, under an exclusive ``flock`` on
``<key>.lock`` (concurrent jobs build once). fp16 matches the live teacher's losses to bf16-like
tolerance (``tests/test_teacher_cache.py``). Question answering is not cached: its logits at
padding positions, which the prediction loss reads, depend on the batch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from tqdm.auto import tqdm

from cofi_lightning.config import ConfigError
from cofi_lightning.data.base import PadCollator
from cofi_lightning.run.ranks import barrier, is_global_zero
from cofi_lightning.run.rundir import pid_alive

if TYPE_CHECKING:
    from cofi_lightning.run.context import RunContext
    from cofi_lightning.training.parts import Distillation

log = logging.getLogger(__name__)

#: Bump when the layout or what is stored changes.
CACHE_VERSION = 1
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: ``<key>.tmp-<host>-<pid>``; a name without a host is this host's.
_TMP_NAME = re.compile(r"^(?P<key>[0-9a-f]+)\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)$")
_CHUNK_BYTES = 16 << 20


class TeacherCacheError(ConfigError):
    """A cache entry is damaged (and could not be rebuilt); ``problem`` says how, in a phrase."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def weights_digest(model: nn.Module) -> str:
    """A content hash of a model's state dict (names, dtypes, shapes and values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class CachedTeacher:
    """Teacher outputs for one batch: ``logits`` ``[B, C]`` and ``hidden`` ``[n_t, B, S, H]``
    (zeros at padding; None without distilled layers), float32 as the live teacher's."""

    logits: torch.Tensor
    hidden: torch.Tensor | None


class TeacherCache:
    """A finished entry, checked against its ``meta.json`` when opened.

    Raises:
        TeacherCacheError: a file is missing, or its size or checksum is not the recorded one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        log.info("teacher cache: reading %s", self.path)
        problem = entry_problem(self.path)
        if problem is not None:
            raise TeacherCacheError(
                f"distill.teacher_cache entry {self.path} {problem}: delete it to rebuild it, or "
                "set distill.teacher_cache=false",
                problem,
            )
        layers = json.loads((self.path / "meta.json").read_text())["layers"]
        self.logits = np.load(self.path / "logits.npy", mmap_mode="r")
        self.offsets = np.load(self.path / "offsets.npy")
        self.hidden = np.load(self.path / "hidden.npy", mmap_mode="r") if layers else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, index: torch.Tensor, seq_len: int, device: torch.device) -> CachedTeacher:
        """The outputs of examples ``index`` ``[B]`` padded to ``seq_len`` tokens."""
        idx = index.detach().cpu().numpy()
        logits = torch.from_numpy(np.asarray(self.logits[idx], dtype=np.float32))
        hidden = None
        if self.hidden is not None:
            n_t, h = self.hidden.shape[1], self.hidden.shape[2]
            out = np.zeros((len(idx), seq_len, n_t, h), dtype=np.float32)
            for row, i in enumerate(idx):
                start, stop = self.offsets[i], self.offsets[i + 1]
                out[row, : stop - start] = self.hidden[start:stop]
            hidden = torch.from_numpy(out).permute(2, 0, 1, 3).to(device)  # [n_t, B, S, H]
        return CachedTeacher(logits.to(device), hidden)


def _file_names(layers: list[int]) -> list[str]:
    return ["logits.npy", "offsets.npy"] + (["hidden.npy"] if layers else [])


def _crc32(path: Path) -> str:
    """The CRC-32 of a file, read in chunks (flat memory whatever its size): unlike sampled
    blocks it catches damage anywhere, for ~1 s per GB."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def entry_problem(path: Path) -> str | None:
    """Why the entry at ``path`` cannot be served (a short phrase), or None when it is sound
    (sizes first: a truncated file costs a ``stat``; checksums after)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return "has no meta.json (an unfinished or partly removed build)"
    except (OSError, ValueError) as err:
        return f"has an unreadable meta.json ({err})"
    files = meta.get("files")
    if not isinstance(files, dict):
        return "records no file sizes or checksums (built by an older version)"
    for name in _file_names(meta.get("layers", [])):
        if name not in files:
            return f"records no size or checksum for {name}"
        try:
            size = (path / name).stat().st_size
        except FileNotFoundError:
            return f"has no {name}"
        if size != files[name]["bytes"]:
            return f"has {name} of {size} bytes, {files[name]['bytes']} when built (truncated?)"
    for name in _file_names(meta["layers"]):
        if _crc32(path / name) != files[name]["crc32"]:
            return f"has {name} whose CRC-32 differs from the one recorded when built (damaged)"
    return None


def _tmp_dir(path: Path) -> Path:
    return path.parent / f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}"


def remove_stale_builds(root: Path) -> list[Path]:
    """Remove the temporary folders of builds killed on this host (SIGKILL, out of memory);
    returns them.

    Stale: this host's, its process gone and its key's lock free (a live builder's folder, even
    one whose pid was reused, is never touched; whether another host's process lives is unknown).
    """
    removed = []
    host = socket.gethostname()
    for tmp in sorted(Path(root).glob("*.tmp-*")):
        m = _TMP_NAME.match(tmp.name)
        if m is None or m["host"] not in (None, host) or pid_alive(int(m["pid"])):
            continue
        with open(tmp.parent / f"{m['key']}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a job is building that key: leave it to the next sweep
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("teacher cache: removed %s (left by a killed build)", tmp)
        removed.append(tmp)
    return removed


def _discard(path: Path, problem: str) -> None:
    """Remove a damaged entry (under its key's lock) so that it can be rebuilt."""
    log.warning("teacher cache: entry %s %s: rebuilding it", path, problem)
    tmp = _tmp_dir(path)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        os.replace(path, tmp)  # out of the readers' way at once; removed below
        shutil.rmtree(tmp)
    except OSError as err:
        raise TeacherCacheError(
            f"distill.teacher_cache entry {path} {problem} and cannot be removed "
            f"({err.strerror or err}): delete it, or set distill.teacher_cache=false",
            problem,
        ) from None


def cache_key(teacher: nn.Module, features_key: str, layers: list[int]) -> str:
    """The entry name: what the stored outputs depend on, hashed."""
    key = {
        "version": CACHE_VERSION,
        "teacher": weights_digest(teacher),
        "features": features_key,
        "layers": list(layers),
        "dtype": "float16",
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def run_cache(ctx: RunContext, distillation: Distillation) -> TeacherCache | None:
    """The cache of a stage's teacher outputs on the run's training set, or None when the run
    uses none (built by rank 0 under DDP; the others wait at the barrier)."""
    if not ctx.cfg.distill.teacher_cache:
        return None
    if ctx.task.family == "squad":
        rank_zero_info("teacher cache: not used for QA (its padding logits depend on the batch)")
        return None
    teacher, dm = distillation.teacher, ctx.datamodule
    dm.setup("fit")
    accelerator = str(ctx.cfg.trainer.get("accelerator", "auto"))
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        teacher.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")  # build on the GPU
    kwargs = dict(
        features_key=dm.feature_keys[f"{ctx.task.train_split}/{dm.family}"],
        layers=distillation.layers,
        root=Path(dm.cache_dir) / "teacher_outputs",
        pad_token_id=ctx.tokenizer.pad_token_id,
        batch_size=max(dm.eval_batch_size, dm.batch_size),
    )
    if is_global_zero():
        cache = open_or_build(teacher, dm.train_dataset, **kwargs)
    barrier()
    if not is_global_zero():
        cache = open_or_build(teacher, dm.train_dataset, **kwargs)
    return cache


def open_or_build(
    teacher: nn.Module,
    dataset,
    *,
    features_key: str,
    layers: list[int],
    root: Path,
    pad_token_id: int,
    batch_size: int = 128,
    progress: bool = True,
) -> TeacherCache:
    """The cache of ``teacher`` on ``dataset``, built on first use; a damaged entry is rebuilt.

    Args:
        dataset: The training features (HF ``Dataset``), indexed as the training loader does.
        features_key: The features' own cache key (task, split, data, tokenizer, max length).
        layers: 0-based teacher layers whose outputs are stored (empty: logits only).
    """
    key = cache_key(teacher, features_key, layers)
    path = Path(root) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(path.parent)
    if (path / "meta.json").is_file():
        try:
            return TeacherCache(path)
        except TeacherCacheError:
            pass  # repaired below, under the lock
    with open(path.parent / f"{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("teacher cache: waiting for another job building %s", path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # checked again: another job may have built or repaired it meanwhile
            try:
                return TeacherCache(path)
            except TeacherCacheError as err:
                _discard(path, err.problem)
        _build(teacher, dataset, path, layers, pad_token_id, batch_size, progress)
    return TeacherCache(path)


def _build(
    teacher: nn.Module,
    dataset,
    path: Path,
    layers: list[int],
    pad_token_id: int,
    batch_size: int,
    progress: bool,
) -> None:
    lengths = np.asarray([int(sum(m)) for m in dataset["attention_mask"]], dtype=np.int64)
    config = teacher.config
    # fp16 states of every real token, fp16 logits and int64 offsets
    size = int(lengths.sum()) * len(layers) * config.hidden_size * 2
    size += len(lengths) * (config.num_labels * 2 + 8)
    free = shutil.disk_usage(path.parent).free
    log.info(
        "teacher cache: building %s (%d examples, %d tokens, %d layers: %.1f MB on disk, %.1f GB "
        "free)",
        path,
        len(lengths),
        int(lengths.sum()),
        len(layers),
        size / 1e6,
        free / 1e9,
    )
    if size > 0.95 * free:
        raise ConfigError(
            f"distill.teacher_cache needs {size / 1e9:.1f} GB under {path.parent} but only "
            f"{free / 1e9:.1f} GB are free: free space, point paths.cache_dir (or "
            "$COFI_CACHE_DIR) to a larger disk, or set distill.teacher_cache=false"
        )
    tmp = _tmp_dir(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(teacher, dataset, tmp, lengths, layers, pad_token_id, batch_size, progress)
        meta = {
            "version": CACHE_VERSION,
            "layers": list(layers),
            "examples": len(lengths),
            "tokens": int(lengths.sum()),
            "bytes": size,
            "files": {
                name: {"bytes": (tmp / name).stat().st_size, "crc32": _crc32(tmp / name)}
                for name in _file_names(layers)
            },
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an exception or Ctrl-C; SIGKILL: the next sweep
        raise


@torch.no_grad()
def _write(
    teacher: nn.Module,
    dataset,
    tmp: Path,
    lengths: np.ndarray,
    layers: list[int],
    pad_token_id: int,
    batch_size: int,
    progress: bool,
) -> None:
    """Run the teacher over ``dataset`` and write its outputs' files into ``tmp``."""
    hidden_size, num_labels = teacher.config.hidden_size, teacher.config.num_labels
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    logits = np.lib.format.open_memmap(
        tmp / "logits.npy", mode="w+", dtype=np.float16, shape=(len(lengths), num_labels)
    )
    hidden = None
    if layers:
        hidden = np.lib.format.open_memmap(
            tmp / "hidden.npy",
            mode="w+",
            dtype=np.float16,
            shape=(int(lengths.sum()), len(layers), hidden_size),
        )
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    order = np.argsort(-lengths, kind="stable")  # longest first: little padding per batch
    bar = tqdm(total=len(order), desc="Teacher cache", unit="ex", disable=not progress)
    collate = PadCollator(pad_token_id)  # the training loader's padding
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        padded = collate(dataset.__getitems__([int(i) for i in chunk]))
        batch = {name: padded[name].to(device) for name in _SEQUENCE_KEYS if name in padded}
        out = teacher(**batch, output_hidden_states=bool(layers))
        logits[chunk] = out.logits.float().cpu().numpy().astype(np.float16)
        if hidden is not None:
            states = torch.stack([out.hidden_states[i + 1] for i in layers], dim=2)  # [b,S,n,H]
            states = states.float().cpu().numpy().astype(np.float16)
            for r, i in enumerate(chunk):
                hidden[offsets[i] : offsets[i + 1]] = states[r, : lengths[i]]
        bar.update(len(chunk))
    bar.close()
    teacher.train(was_training)
    logits.flush()
    if hidden is not None:
        hidden.flush()
    np.save(tmp / "offsets.npy", offsets)
