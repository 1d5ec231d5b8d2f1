"""Every command of the package is an argparse program: ``python -m <module> --help`` exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = (
    "cofi_lightning.tools.bench",
    "cofi_lightning.tools.prepare",
    "cofi_lightning.tools.demo",
    "cofi_lightning.tools.report",
    "cofi_lightning.deploy",
)


@pytest.fixture(scope="module")
def help_runs():
    """``python -m <module> --help`` of every module, started at once: each spends seconds
    importing torch and transformers (the package registers its models on import)."""
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-m", module, "--help"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in MODULES
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("module", MODULES)
def test_help_exits_0(help_runs, module):
    out, err = help_runs[module].communicate(timeout=300)
    assert help_runs[module].returncode == 0, err[-4000:]
    assert out.startswith("usage: ") and "-h, --help" in out
