"""Shared test fixtures: the read-only ``../shared`` assets (tiny configs: ``tiny_bert.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("COFI_SHARED_DIR", REPO_ROOT.parent / "shared"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (CI has it), for tests on real data or models."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} not found (set COFI_SHARED_DIR); real-data integration test")
    return SHARED_DIR


@pytest.fixture(scope="session")
def minilm_dir(shared_dir: Path) -> Path:
    return shared_dir / "models" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def minilm_l2_dir(shared_dir: Path) -> Path:
    return shared_dir / "models" / "minilm-l2-h384-uncased-sliced"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"
