"""A directory nobody can create files in, for real, also when the tests run as root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """Make ``path`` unwritable while the block runs (``chmod`` for a user; ``chattr +i`` for
    root, whom permission bits do not stop), then writable again.

    Skips the test, saying why, where neither is possible (root without CAP_LINUX_IMMUTABLE).
    """
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make {path} read-only as root: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
