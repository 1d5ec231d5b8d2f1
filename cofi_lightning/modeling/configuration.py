"""Configs that spell out the architecture per layer, so any loader rebuilds a pruned model's exact
shapes: ``hidden_size`` (kept), ``num_heads`` and ``intermediate_sizes`` per layer (0: sublayer
removed), ``attention_head_size`` and ``pooler_size`` (unchanged by pruning).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig


class PerLayerSizes:
    """The per-layer architecture shared by every family's CoFi config (methods only: each config
    class declares the four fields itself, as ``huggingface_hub``'s strict dataclasses need).

    Missing per-layer fields are filled from the family's uniform fields, so a vanilla config
    converts with ``CoFi<Family>Config(**config.to_dict())`` or :meth:`from_pretrained_config`.
    """

    def __post_init__(self, **kwargs):  # first in every CoFi config's MRO: fill, then validate
        self._fill_per_layer()
        super().__post_init__(**kwargs)

    def _fill_per_layer(self) -> None:
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
                    f"{type(self).__name__}.{key} must list {L} sizes >= 0 "
                    f"(num_hidden_layers={L}), got {values}"
                )

    @classmethod
    def from_pretrained_config(cls, config, **overrides):
        """Convert a vanilla config of the family (uniform layers), or a CoFi one, into this
        class, with ``overrides``."""
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


@strict
class CoFiBertConfig(PerLayerSizes, BertConfig):
    """``BertConfig`` plus the explicit per-layer architecture."""

    model_type = "cofi_bert"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None

    @classmethod
    def from_bert_config(cls, config: BertConfig, **overrides) -> CoFiBertConfig:
        """Convert a vanilla ``BertConfig`` (uniform layers) into this class."""
        return cls.from_pretrained_config(config, **overrides)
