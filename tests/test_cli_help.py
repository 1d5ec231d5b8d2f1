"""Every command of the package is an argparse program: ``python -m <module> --help`` exits 0.

Run in-process (``runpy`` executes the module as ``__main__``, as ``python -m`` does): a
subprocess each spent seconds importing torch and transformers again."""

from __future__ import annotations

import runpy
import sys
import warnings

import pytest

MODULES = (
    "cofi_lightning.tools.bench",
    "cofi_lightning.tools.prepare",
    "cofi_lightning.tools.demo",
    "cofi_lightning.tools.report",
    "cofi_lightning.deploy",
)


@pytest.mark.parametrize("module", MODULES)
def test_help_exits_0(module, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with warnings.catch_warnings():
        # runpy warns that a module already imported (by the other tests) runs again as __main__
        warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
        with pytest.raises(SystemExit) as exited:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "-h, --help" in out
