"""Fixtures of the training-system tests: tiny random BERTs and an in-memory task DataModule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig

from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

from runs import tiny_run_overrides
from tiny_bert import save_tiny_bert, tiny_bert_kwargs

TINY = tiny_bert_kwargs()


def tiny_classifier(seed: int = 0, **overrides) -> CoFiBertForSequenceClassification:
    """A random 2-layer CoFi BERT classifier (2 labels)."""
    torch.manual_seed(seed)
    config = CoFiBertConfig.from_bert_config(BertConfig(**{**TINY, **overrides}), num_labels=2)
    return CoFiBertForSequenceClassification(config)


class _Synthetic(Dataset):
    """Random token sequences whose label is the parity of the second token (learnable)."""

    def __init__(self, n: int, seed: int, seq_len: int = 12, vocab: int = 99) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, vocab, (n, seq_len), generator=g)
        self.ids[:, 0] = 2  # [CLS]
        lengths = torch.randint(seq_len // 2, seq_len + 1, (n,), generator=g)
        self.mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
        self.ids = self.ids * self.mask
        self.labels = self.ids[:, 1] % 2

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": self.mask[i],
            "token_type_ids": torch.zeros_like(self.ids[i]),
            "labels": self.labels[i],
        }


class SyntheticGlue(L.LightningDataModule):
    """An SST-2-shaped DataModule over :class:`_Synthetic` data (no files, no tokenizer)."""

    def __init__(self, n_train: int = 32, n_val: int = 16, batch_size: int = 8) -> None:
        super().__init__()
        self.train_dataset, self.val = _Synthetic(n_train, 0), _Synthetic(n_val, 1)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


@pytest.fixture
def synthetic_dm() -> SyntheticGlue:
    return SyntheticGlue()


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or model summary."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**defaults, **kwargs})


@pytest.fixture
def make_student():
    """Factory of tiny random classifiers: ``make_student(seed=0, **config_overrides)``."""
    return tiny_classifier


@pytest.fixture
def make_trainer():
    """Factory of quiet CPU trainers: ``make_trainer(max_steps=2, ...)``."""
    return quiet_trainer


CONF_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    """A vanilla HF BERT dir (random, hidden 32, no dropout) + MiniLM tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_dir)


@pytest.fixture(scope="session")
def tiny_bert_dropout_dir(tmp_path_factory, minilm_dir):
    """As ``tiny_bert_dir`` with dropout 0.1 (BERT's), so training draws random numbers."""
    return save_tiny_bert(
        tmp_path_factory.mktemp("tiny_bert_dropout"),
        minilm_dir,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def _save_tiny_roberta(out, minilm_dir, config_cls, model_cls):
    import shutil

    torch.manual_seed(0)
    kwargs = {**TINY, "vocab_size": 30522, "max_position_embeddings": 130, "type_vocab_size": 1}
    model_cls(config_cls(**kwargs, pad_token_id=0)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory, minilm_dir):
    """A vanilla HF RoBERTa dir (random, hidden 32) + MiniLM's tokenizer (its [PAD] is 0, so
    positions count from 1, as RoBERTa's count from its pad id + 1)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_roberta")
    return _save_tiny_roberta(out, minilm_dir, RobertaConfig, RobertaForSequenceClassification)


@pytest.fixture(scope="session")
def tiny_xlm_dir(tmp_path_factory, minilm_dir):
    """As ``tiny_roberta_dir``, an XLM-R checkpoint."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_xlm_roberta")
    return _save_tiny_roberta(
        out, minilm_dir, XLMRobertaConfig, XLMRobertaForSequenceClassification
    )


@pytest.fixture(scope="session")
def tiny_deberta_dir(tmp_path_factory, minilm_dir):
    """A vanilla HF DeBERTa-v3-style dir (random, hidden 32) + MiniLM's tokenizer."""
    import shutil

    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_deberta")
    torch.manual_seed(0)
    config = DebertaV2Config(
        **{**TINY, "vocab_size": 30522, "max_position_embeddings": 128, "type_vocab_size": 0},
        relative_attention=True,
        position_buckets=16,
        pos_att_type=["p2c", "c2p"],
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        position_biased_input=False,
        pooler_hidden_size=TINY["hidden_size"],
    )
    DebertaV2ForSequenceClassification(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory, minilm_dir):
    """A vanilla HF ModernBERT dir (random, hidden 32, a global layer every third) + MiniLM's
    tokenizer."""
    import shutil

    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_modernbert")
    torch.manual_seed(0)
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    config = ModernBertConfig(
        **{k: TINY[k] for k in keys},
        vocab_size=30522,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
        cls_token_id=101,
        sep_token_id=102,
        local_attention=16,
        global_attn_every_n_layers=2,
    )
    ModernBertForSequenceClassification(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feature_cache")


@pytest.fixture
def compose_train():
    """``compose_train(overrides) -> DictConfig`` of ``conf/train.yaml``."""
    from hydra import compose, initialize_config_dir

    import cofi_lightning.config  # noqa: F401  (the schema and the cofi.* resolvers)

    def _compose(overrides=(), hydra_cfg: bool = False):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=list(overrides), return_hydra_config=hydra_cfg)

    return _compose


@pytest.fixture
def tiny_overrides(tiny_bert_dir, feature_cache):
    return lambda run_dir: tiny_run_overrides(tiny_bert_dir, run_dir, feature_cache)


@pytest.fixture
def sweep_overrides(tiny_bert_dir, feature_cache):
    """The tiny pipeline's overrides without ``run_dir``, for multiruns (each job's directory is
    named by Hydra from the run name, config hash included)."""
    overrides = tiny_run_overrides(tiny_bert_dir, "unused", feature_cache)
    return [o for o in overrides if not o.startswith("run_dir=")]


@pytest.fixture
def train_cli():
    """``train_cli(*args, timeout=600, check=True)``: run ``python train.py <args>`` offline in a
    subprocess (one thread per process), by default asserting it exits 0; returns the
    ``CompletedProcess``."""
    import os
    import subprocess
    import sys

    repo = CONF_DIR.parent

    def _run(*args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(repo / "train.py"), *args]
        proc = subprocess.run(
            cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0 or not check, proc.stderr[-4000:]
        return proc

    return _run
