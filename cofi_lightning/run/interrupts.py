"""SIGTERM (``kill``, ``timeout``, Kubernetes and SLURM preemption) ends a run as *interrupted*.

This file owns :class:`SigtermGuard`, installed by ``cofi_lightning.run.pipeline.train`` for the
stages, and :class:`RunInterrupted`, what it raises: ``train.py`` turns it into one line and the
exit status :data:`EXIT_INTERRUPTED`, so sweep drivers, job arrays and CI never count an unfinished
run as done. Without it Lightning stops a fit at the signal by raising ``SIGTERMException``, a
``SystemExit`` of status 0, and a SIGTERM late in a trainer call (in its end hooks, at its last
validation batch) was swallowed: the stage was recorded as done and the run went on.

Inside a trainer call Lightning's handler is installed and calls this one too: the fit stops at
the next batch boundary (the stage's last checkpoint is what a rerun resumes from). Anywhere else
(loading models, building the teacher cache, exporting) this handler is the installed one and
raises at once. Either way, the stage gets no ``DONE.json`` and no later stage runs.
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
    """The process received SIGTERM before the run finished; rerunning the command resumes it.

    A ``BaseException`` (like ``KeyboardInterrupt``): no ``except Exception`` on the way may
    mistake it for a failure and go on.

    Args:
        stage: The stage (its directory name) that was running; None between stages.
    """

    def __init__(self, stage: str | None) -> None:
        self.stage = stage
        where = f"in stage {stage}" if stage else "between stages"
        super().__init__(
            f"interrupted by SIGTERM {where} (not recorded as done); rerun the same command "
            "to resume from its last checkpoint"
        )


class SigtermGuard:
    """Record SIGTERM while the pipeline runs and end the run with :class:`RunInterrupted`.

    A context manager (the previous handler is restored on exit); a no-op outside the main
    thread, where Python cannot install signal handlers.
    """

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
        """Run the body as stage ``name`` (what :class:`RunInterrupted` names): Lightning's
        ``SIGTERMException`` becomes :class:`RunInterrupted`. The body calls :meth:`check` before
        it records the stage as done."""
        self.current = name
        try:
            yield
        except SIGTERMException as err:
            raise RunInterrupted(name) from err
        finally:
            self.current = None
