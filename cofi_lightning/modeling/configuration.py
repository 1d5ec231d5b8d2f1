"""Configuration of the prunable BERT: a ``BertConfig`` that spells out the architecture per layer.

This file owns the config only. A pruned model differs from BERT in four numbers, all stored
explicitly in ``config.json`` so any loader can rebuild the exact shapes without guessing from
tensors (the original CoFi checkpoints kept the unpruned sizes in their config, so plain
loaders failed):

- ``hidden_size``: the kept hidden dimensions (may be smaller than the pretrained model's);
- ``num_heads``: heads per layer (0 = the attention sublayer is removed);
- ``intermediate_sizes``: FFN dimensions per layer (0 = the FFN sublayer is removed);
- ``attention_head_size``: the size of one head (unchanged by pruning);
plus ``pooler_size``, the pooler's output size, which hidden pruning leaves untouched.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig


@strict
class CoFiBertConfig(BertConfig):
    """``BertConfig`` plus the explicit per-layer architecture (see the module docstring).

    Missing per-layer fields are filled from the uniform BERT fields, so a vanilla BERT config
    converts with ``CoFiBertConfig(**bert_config.to_dict())``.
    """

    model_type = "cofi_bert"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None

    def __post_init__(self, **kwargs):
        L = self.num_hidden_layers
        if self.attention_head_size is None:
            self.attention_head_size = self.hidden_size // self.num_attention_heads
        if self.num_heads is None:
            self.num_heads = [self.num_attention_heads] * L
        if self.intermediate_sizes is None:
            self.intermediate_sizes = [self.intermediate_size] * L
        if self.pooler_size is None:
            self.pooler_size = self.hidden_size
        self.num_heads = [int(n) for n in self.num_heads]
        self.intermediate_sizes = [int(n) for n in self.intermediate_sizes]
        for key in ("num_heads", "intermediate_sizes"):
            values = getattr(self, key)
            if len(values) != L or min(values, default=0) < 0:
                raise ValueError(
                    f"CoFiBertConfig.{key} must list {L} sizes >= 0 (num_hidden_layers={L}), "
                    f"got {values}"
                )
        super().__post_init__(**kwargs)

    @classmethod
    def from_bert_config(cls, config: BertConfig, **overrides) -> CoFiBertConfig:
        """Convert a vanilla ``BertConfig`` (uniform layers) into this class."""
        values = config.to_dict()
        for key in ("model_type", "transformers_version", "architectures"):
            values.pop(key, None)
        if "num_labels" in overrides:  # the label maps of the old head would contradict it
            values.pop("id2label", None)
            values.pop("label2id", None)
        values.update(overrides)
        return cls(**values)

    def is_uniform(self) -> bool:
        """True when every layer has the same (non-zero) heads and FFN sizes: an unpruned model."""
        return (
            len(set(self.num_heads)) == 1
            and len(set(self.intermediate_sizes)) == 1
            and self.num_heads[0] > 0
            and self.intermediate_sizes[0] > 0
        )
