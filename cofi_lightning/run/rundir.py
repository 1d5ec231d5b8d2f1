"""Ownership of a run directory: which config it belongs to, and which process is using it.

This file owns ``run.json`` (the identity of the config that created the run: a later invocation
resumes only with the same identity, else stops listing the keys that differ) and ``.lock``
(created atomically by the process running the pipeline, refreshed by a heartbeat; a dead owner's
lock is taken over with a warning, so a killed job never blocks its requeue). A refused
invocation writes nothing there, not even Hydra's files: see :func:`unless_refused`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cofi_lightning.config.identity import config_identity, identity_diff, identity_hash
from cofi_lightning.run.checkpoints import write_text_atomically
from cofi_lightning.run.ranks import is_global_zero

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 10 * HEARTBEAT_SECONDS


class RunDirError(RuntimeError):
    """The run directory belongs to another config or another live process."""


def has_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run started by this framework (``run.json`` or a stage dir)."""
    from cofi_lightning.config.schema import STAGES

    return (run_dir / RUN_FILE).is_file() or any((run_dir / s).is_dir() for s in STAGES)


def check_identity(run_dir: Path, identity: dict[str, Any], resume: str) -> bool:
    """Check, without writing anything, that this config (``identity``) may use ``run_dir``
    under the ``resume`` key (``auto`` | ``must`` | ``never``); True when it holds a run of this
    identity to resume, False when it holds none."""
    path = run_dir / RUN_FILE
    fresh = "pass run_dir=<another directory>, or delete this one to start over"
    existing = has_run(run_dir)
    if resume == "never" and existing:
        raise RunDirError(f"resume=never but {run_dir} already holds a run; {fresh}")
    if resume == "must" and not existing:
        raise RunDirError(f"resume=must but {run_dir} holds no run to resume")
    if path.is_file():
        stored = json.loads(path.read_text())
        diff = identity_diff(stored["identity"], identity)
        if diff:
            listed = "\n  ".join(diff)
            raise RunDirError(
                f"{run_dir} belongs to another config (hash {stored['hash']}, this one "
                f"{identity_hash(identity)}); the keys that differ:\n  {listed}\n"
                f"Resuming would mix the two runs: {fresh}."
            )
        return True
    if existing:
        # A run from before run.json existed: its config cannot be compared.
        raise RunDirError(f"{run_dir} holds a run without {RUN_FILE}; {fresh}")
    return False


def check_run_dir(run_dir: Path, identity: dict[str, Any], resume: str) -> None:
    """Raise :class:`RunDirError` if this invocation would be refused ``run_dir`` (another
    config's run, or a live process's lock), without writing anything; :func:`claim` and
    :class:`RunLock`, taken afterwards, stay the authority."""
    check_identity(run_dir, identity, resume)
    RunLock(run_dir).check_free()


def claim(run_dir: Path, identity: dict[str, Any], resume: str) -> bool:
    """:func:`check_identity`, then record the identity in ``run_dir`` (created if missing);
    True when an existing run is resumed."""
    if check_identity(run_dir, identity, resume):
        return True
    path = run_dir / RUN_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"hash": identity_hash(identity), "identity": identity}
    write_text_atomically(path, json.dumps(record, indent=2, sort_keys=True, default=str))
    return False


def tracker_run_id(run_dir: Path, config_id: str) -> str:
    """The id of the job's tracker run (W&B) for the config of hash ``config_id`` in ``run_dir``:
    a resumed job, and a later command on the finished run (``python -m cofi_lightning.deploy``),
    continue the same tracker run; the same config run again elsewhere gets a run of its own."""
    place = f"{config_id}:{Path(run_dir).resolve()}"
    return f"{config_id}-{hashlib.sha256(place.encode()).hexdigest()[:6]}"


def recorded_run_id(run_dir: Path) -> str:
    """:func:`tracker_run_id` of a run directory, from the identity hash in its ``run.json``."""
    return tracker_run_id(run_dir, json.loads((Path(run_dir) / RUN_FILE).read_text())["hash"])


def slurm_attempt() -> tuple[str, int] | None:
    """This process's SLURM job id and attempt (``SLURM_RESTART_COUNT``: 0 until a requeue), or
    None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    return None if job is None else (job, int(os.environ.get("SLURM_RESTART_COUNT", 0)))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive, self-expiring lock on a run directory (a context manager).

    A lock whose owner is dead is stale: same host, no such pid; an earlier attempt of the same
    SLURM job (SLURM ended it before requeueing); another host, not refreshed for
    ``stale_seconds``.
    """

    def __init__(
        self,
        run_dir: Path,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, owner: dict[str, Any]) -> bool:
        attempt, previous = slurm_attempt(), owner.get("slurm")
        if attempt and isinstance(previous, list) and previous[0] == attempt[0]:
            if previous[1] < attempt[1]:
                return True  # an earlier attempt of this requeued job: SLURM ended it
        if owner.get("host") == socket.gethostname() and "pid" in owner:
            return not pid_alive(int(owner["pid"]))
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.stale_seconds

    def _in_use(self, owner: dict[str, Any]) -> RunDirError:
        return RunDirError(
            f"{self.path.parent} is in use by pid {owner.get('pid')} on "
            f"{owner.get('host')} (lock {self.path}); two processes on one run "
            "directory would overwrite each other. Wait for it, or pass "
            "run_dir=<another directory>."
        )

    def check_free(self) -> None:
        """Raise :class:`RunDirError` naming the live owner if the lock is held (reads only)."""
        if self.path.is_file():
            owner = self._owner()
            if not self._stale(owner):
                raise self._in_use(owner)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunDirError` naming the live owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        if attempt := slurm_attempt():
            me["slurm"] = list(attempt)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if not self._stale(owner):
                    raise self._in_use(owner) from None
                log.warning("taking over the stale lock of a dead run: %s", owner)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._thread = threading.Thread(target=self._beat, daemon=True, name="run-lock")
            self._thread.start()
            return
        raise RunDirError(f"could not take the lock {self.path}")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def unless_refused(value: Any, refused: Any, *, _root_: DictConfig) -> Any:
    """``value``, or ``refused`` when this invocation will be refused Hydra's output dir.

    Hydra saves ``.hydra/`` and opens the job log before it calls ``train()``; ``conf/hydra``
    reads both through this resolver, which Hydra evaluates right before writing, so a refused
    invocation gets no ``.hydra/`` and logs to ``/dev/null`` (the console still shows the error).
    """
    output_dir = OmegaConf.select(_root_, "hydra.runtime.output_dir", default=None)
    if not output_dir or not is_global_zero():  # outside a job (--cfg); a DDP rank > 0 of a run
        return value
    try:
        check_run_dir(Path(output_dir), config_identity(_root_), str(_root_.get("resume")))
    except RunDirError:
        return refused
    except Exception:  # a config that does not resolve here: train() names its key
        pass
    return value


OmegaConf.register_new_resolver("cofi.unless_refused", unless_refused, replace=True)
