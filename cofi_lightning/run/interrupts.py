"""SIGTERM (``kill``, ``timeout``, Kubernetes and SLURM preemption) ends a run as *interrupted*.

:class:`SigtermGuard` raises :class:`RunInterrupted`, which ``train.py`` turns into one line and the
exit status :data:`EXIT_INTERRUPTED`, so nothing counts an unfinished run as done (Lightning's own
``SIGTERMException`` is a ``SystemExit`` of status 0, and a SIGTERM late in a trainer call was
swallowed). Inside a trainer call the fit stops at the next batch boundary; anywhere else (loading
models, building the teacher cache, exporting) it stops at once. Either way, the stage gets no
``DONE.json`` and no later stage runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from lightning.pytorch.utilities.exceptions import SIGTERMException

#: 128 + SIGTERM: what a shell reports for a process that SIGTERM ended.
EXIT_INTERRUPTED = 128 + signal.SIGTERM


class RunInterrupted(BaseException):
    """The process received SIGTERM before the run finished in ``stage`` (None: between stages).

    A ``BaseException`` (like ``KeyboardInterrupt``): no ``except Exception`` on the way may
    mistake it for a failure and go on.
    """

    def __init__(self, stage: str | None) -> None:
        self.stage = stage
        where = f"in stage {stage}" if stage else "between stages"
        super().__init__(
            f"interrupted by SIGTERM {where} (not recorded as done); rerun the same command "
            "to resume from its last checkpoint"
        )


class SigtermGuard:
    """Record SIGTERM while the pipeline runs and end the run with :class:`RunInterrupted` (a
    context manager; a no-op outside the main thread, where Python installs no handlers)."""

    def __init__(self) -> None:
        self.received = False
        #: The stage running now (what :class:`RunInterrupted` names).
        self.current: str | None = None
        self._previous = None
        self._installed = False

    def __enter__(self) -> SigtermGuard:
        self.received, self.current = False, None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.received
        self.received = True
        # Installed directly: no trainer is running to stop at a safe point, so stop here (once:
        # a second signal must not break the cleanup the first one started).
        if first and signal.getsignal(signal.SIGTERM) == self._handle:
            raise RunInterrupted(self.current)

    def check(self) -> None:
        """Raise :class:`RunInterrupted` if SIGTERM was received (a trainer call that took the
        signal may still have returned normally, e.g. at its last batch)."""
        if self.received:
            raise RunInterrupted(self.current)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run the body as stage ``name``: Lightning's ``SIGTERMException`` becomes
        :class:`RunInterrupted`."""
        self.current = name
        try:
            yield
        except SIGTERMException as err:
            raise RunInterrupted(name) from err
        finally:
            self.current = None
