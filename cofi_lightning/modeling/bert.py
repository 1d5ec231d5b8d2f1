"""The prunable BERT models and what every family's models share: loading (a vanilla checkpoint of
the family or an exported compact one, never a silent partial load), the pruning API and the task
models (a family's task model supplies only its head).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

# Relative imports only (and no other package import outside ``try``): exported checkpoints ship
# these files as ``trust_remote_code`` modules for users who do not have cofi-lightning installed.
from .configuration import CoFiBertConfig
from .layers import CoFiBertEmbeddings, CoFiBertEncoder, split_masks
from .pruning import Kept, LayerKeep, linear_part, prune_model

if TYPE_CHECKING:
    try:
        from cofi_lightning.core.masks.types import Masks
    except ImportError:  # loaded as remote code
        pass

log = logging.getLogger(__name__)

#: Config keys that ``from_pretrained`` forwards to the config rather than to the model.
_CONFIG_OVERRIDES = ("num_labels", "id2label", "label2id", "problem_type", "classifier_dropout")


def _key(mismatch) -> str:
    """The parameter name of a ``mismatched_keys`` entry (a name, or ``(name, shapes...)``)."""
    return mismatch if isinstance(mismatch, str) else mismatch[0]


@contextlib.contextmanager
def _transformers_quiet():
    """Raise transformers' log level to errors while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not match its (or the requested) architecture."""


class CoFiBertPreTrainedModel(PreTrainedModel):
    """Weight initialisation, loading and the pruning / counting API of every family's models."""

    config_class = CoFiBertConfig
    base_model_prefix = "bert"
    vanilla_model_types: tuple[str, ...] = ("bert",)
    #: Parameters a vanilla checkpoint may lack: the freshly initialised task head.
    _new_head_prefixes: tuple[str, ...] = ()

    @classmethod
    def task_head_prefixes(cls) -> tuple[str, ...]:
        """Name prefixes of the task head's parameters (what a vanilla checkpoint lacks)."""
        return cls._new_head_prefixes

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CoFiBertEmbeddings):
            with torch.no_grad():
                module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).unsqueeze(0))

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, config=None, **kwargs):
        """Load a vanilla HF checkpoint of the family or an exported cofi-lightning checkpoint
        (``kwargs`` of ``_CONFIG_OVERRIDES`` go to the config).

        Raises:
            ValueError: the checkpoint is of another family (names the architecture found).
            CheckpointMismatchError: weights missing, unexpected or of the wrong shape.
        """
        overrides = {k: kwargs.pop(k) for k in _CONFIG_OVERRIDES if k in kwargs}
        hub_kwargs = {
            k: kwargs[k]
            for k in ("cache_dir", "revision", "local_files_only", "token", "trust_remote_code")
            if k in kwargs
        }
        if config is None:
            source = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            accepted = (*cls.vanilla_model_types, cls.config_class.model_type)
            if source.model_type not in accepted:
                raise ValueError(
                    f"{pretrained_model_name_or_path} is a '{source.model_type}' checkpoint "
                    f"(architectures={getattr(source, 'architectures', None)}); {cls.__name__} "
                    f"loads model_type {' or '.join(repr(t) for t in accepted)}"
                )
            config = cls.config_class.from_pretrained_config(source, **overrides)
            vanilla = source.model_type in cls.vanilla_model_types
        else:
            vanilla = False
        kwargs.setdefault("dtype", torch.float32)  # fp16 checkpoints train and compare in fp32
        if vanilla:  # a task head of another size (e.g. an SST-2 model for STS-B) is re-initialised
            kwargs.setdefault("ignore_mismatched_sizes", True)
        arch = (
            f"hidden_size={config.hidden_size}, num_heads={config.num_heads}, "
            f"intermediate_sizes={config.intermediate_sizes}"
        )
        try:
            # transformers prints a load report listing the task head of a vanilla checkpoint as
            # MISSING; a fresh head is expected here, and real mismatches raise below.
            with _transformers_quiet() if vanilla else contextlib.nullcontext():
                model, info = super().from_pretrained(
                    pretrained_model_name_or_path,
                    *args,
                    config=config,
                    output_loading_info=True,
                    **kwargs,
                )
        except RuntimeError as err:
            if "mismatch" not in str(err):
                raise
            raise CheckpointMismatchError(
                f"weights in {pretrained_model_name_or_path} have shapes that do not match the "
                f"architecture in its config ({arch}); see the load report above for the tensors"
            ) from err
        allowed_missing = cls._new_head_prefixes if vanilla else ()
        missing = [k for k in info["missing_keys"] if not k.startswith(allowed_missing)]
        # vanilla checkpoints may carry an MLM / NSP head or a pooler the QA model does not use
        unexpected = [] if vanilla else list(info["unexpected_keys"])
        mismatched = list(info.get("mismatched_keys", []))
        heads = [m for m in mismatched if allowed_missing and _key(m).startswith(allowed_missing)]
        if heads:
            log.warning(
                "%s: the task head %s has another shape than this task needs and is "
                "initialised anew",
                pretrained_model_name_or_path,
                sorted(_key(m) for m in heads),
            )
        mismatched = [m for m in mismatched if m not in heads]
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(
                f"weights in {pretrained_model_name_or_path} do not match the architecture "
                f"({arch}): missing={missing[:8]} "
                f"unexpected={unexpected[:8]} mismatched={mismatched[:8]}"
            )
        return model

    # --- pruning API ------------------------------------------------------------------------------

    def num_encoder_params(self) -> int:
        """Encoder parameters counted on the real tensors."""
        return sum(p.numel() for p in self.base_model.encoder_parameters())

    def encoder_parameters(self):
        """The encoder's parameters (a family without an ``encoder`` module overrides this)."""
        return self.encoder.parameters()

    def prune_encoder_(self, keeps: list[LayerKeep], hidden: Kept) -> None:
        self.encoder.prune_(keeps, hidden)

    def encoder_layers(self) -> list[nn.Module]:
        """The layers, in order (each has ``unit_scores()`` and ``prune_``)."""
        return list(self.encoder.layer)

    def prune(self, masks: Masks) -> CoFiBertPreTrainedModel:
        """A new compact dense model of the same class (``pruning.prune_model``)."""
        return prune_model(self, masks)


class CoFiBertModel(CoFiBertPreTrainedModel):
    """The encoder with embeddings and an optional pooler."""

    embeddings_class: type[nn.Module] = CoFiBertEmbeddings
    encoder_class: type[nn.Module] = CoFiBertEncoder

    def __init__(self, config: CoFiBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = self.embeddings_class(config)
        self.encoder = self.encoder_class(config)
        self.pooler = None
        if add_pooling_layer:
            self.pooler = nn.Sequential()
            self.pooler.add_module("dense", nn.Linear(config.hidden_size, config.pooler_size))
            self.pooler.add_module("activation", nn.Tanh())
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        masks: Masks | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        """``(sequence [B, S, H], pooled [B, P] or None, hidden states or None)``; hidden states
        follow HF: the embedding output, then every layer's."""
        layer_masks, emb_masks = split_masks(masks, self.config.num_hidden_layers)
        x = self.embeddings(input_ids, token_type_ids, position_ids, emb_masks)
        x, attn_mask = self.attention_inputs(x, attention_mask)
        seq, states = self.encoder(x, attn_mask, layer_masks)
        pooled = self.pooler(seq[:, 0]) if self.pooler is not None else None
        hidden_states = (x, *states) if output_hidden_states else None
        return seq, pooled, hidden_states

    def attention_inputs(self, x: torch.Tensor, attention_mask: torch.Tensor | None):
        """The embeddings ``x [B, S, H]`` as the encoder takes them, and the attention mask
        ``[B, S]`` -> ``[B, 1, 1, S]`` bool (True = attend)."""
        return x, None if attention_mask is None else attention_mask.bool()[:, None, None, :]


class CoFiTaskModel(CoFiBertPreTrainedModel):
    """What the task models of every family share: the family's encoder under
    ``base_model_prefix`` and a head on it. A family's task model supplies ``model_class``,
    ``pooling_layer``, :meth:`add_head`, :meth:`logits` and ``head_input``, under
    ``transformers``' module names."""

    #: The family's encoder class.
    model_class: type[nn.Module] = CoFiBertModel
    #: The encoder holds a pooler (BERT's classification model: ``bert.pooler``).
    pooling_layer = False
    #: The head's first projection: its input columns are hidden dims, pruned with them.
    head_input: str

    def __init__(self, config):
        super().__init__(config)
        encoder = self.model_class(config, add_pooling_layer=self.pooling_layer)
        setattr(self, self.base_model_prefix, encoder)
        self.add_head(config)
        self.post_init()

    def add_head(self, config) -> None:
        raise NotImplementedError

    def logits(
        self, seq: torch.Tensor, pooled: torch.Tensor | None, attention_mask
    ) -> torch.Tensor:
        """The task's logits from the encoder's ``seq [B, S, H]`` and ``pooled [B, P]``."""
        raise NotImplementedError

    def prune_head_(self, hidden: Kept) -> None:
        """Keep the hidden dims at the head's input (``head_input``'s columns)."""
        owner, _, name = self.head_input.rpartition(".")
        owner = self.get_submodule(owner)
        setattr(owner, name, linear_part(getattr(owner, name), cols=hidden.index))


class CoFiBertForSequenceClassification(CoFiTaskModel):
    """Classification, or regression when ``num_labels == 1`` (STS-B, MSE loss); BERT's head:
    the pooler's output, dropout, ``classifier``."""

    _new_head_prefixes = ("classifier.",)
    pooling_layer = True
    head_input = "bert.pooler.dense"

    def add_head(self, config) -> None:
        p = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)
        self.classifier = nn.Linear(config.pooler_size, config.num_labels)

    def logits(
        self, seq: torch.Tensor, pooled: torch.Tensor | None, attention_mask
    ) -> torch.Tensor:
        """``[B, num_labels]``."""
        return self.classifier(self.dropout(pooled))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        masks: Masks | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **_: object,
    ) -> SequenceClassifierOutput:
        """``logits [B, num_labels]``; ``loss`` (CE, or MSE for regression) given ``labels``."""
        seq, pooled, states = self.base_model(
            input_ids, attention_mask, token_type_ids, position_ids, masks, output_hidden_states
        )
        logits = self.logits(seq, pooled, attention_mask)
        loss = None
        if labels is not None and logits.shape[-1] == 1:
            loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        elif labels is not None:
            loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states)


class CoFiBertForQuestionAnswering(CoFiTaskModel):
    """Span extraction: ``start_logits``, ``end_logits [B, S]``; BERT's head (RoBERTa's and
    DeBERTa's too): a linear ``qa_outputs`` on every position."""

    _new_head_prefixes = ("qa_outputs.",)
    head_input = "qa_outputs"

    def add_head(self, config) -> None:
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def logits(
        self, seq: torch.Tensor, pooled: torch.Tensor | None, attention_mask
    ) -> torch.Tensor:
        """``[B, S, 2]``: the start and end logits of every position."""
        return self.qa_outputs(seq)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        masks: Masks | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **_: object,
    ) -> QuestionAnsweringModelOutput:
        """Span logits; ``loss`` (the mean of the start and end cross-entropies) when positions
        are given, those outside the window clamped to S and ignored, as in HF."""
        seq, pooled, states = self.base_model(
            input_ids, attention_mask, token_type_ids, position_ids, masks, output_hidden_states
        )
        start_logits, end_logits = self.logits(seq, pooled, attention_mask).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            S = start_logits.shape[1]
            start, end = start_positions.clamp(0, S), end_positions.clamp(0, S)
            loss = (
                F.cross_entropy(start_logits, start, ignore_index=S)
                + F.cross_entropy(end_logits, end, ignore_index=S)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits.contiguous(),
            end_logits=end_logits.contiguous(),
            hidden_states=states,
        )
