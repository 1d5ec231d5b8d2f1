"""Shared test fixtures: tiny random BERT configs and the read-only ``../shared`` assets."""

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


def tiny_bert_kwargs(**overrides) -> dict:
    """Keyword arguments of a tiny ``BertConfig`` (2 layers, hidden 32, 4 heads of 8, FFN 48)."""
    kwargs = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return kwargs
