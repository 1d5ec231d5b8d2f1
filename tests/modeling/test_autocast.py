"""Mixed precision: under ``torch.autocast`` (bf16 and fp16, CPU here, the same code on CUDA) the
masked and the compact model compute what they compute in fp32, to the precision's round-off.

Tolerance: the largest logit difference to fp32 is at most ``tol * max|fp32 logit|`` with tol 0.05
for bf16 (8-bit mantissa, ~0.4% per rounding) and 0.01 for fp16 (11 bits).
"""

import pytest
import torch
from test_pruning import MODELS, cfg, outputs, random_masks  # noqa: F401  (cfg is a fixture)

from cofi_lightning.core.masks import CoFiMasks

PRECISIONS = [(torch.bfloat16, 0.05), (torch.float16, 0.01)]


def _close(low: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert low.dtype != torch.float32 or ref.dtype == torch.float32
    err = (low.float() - ref).abs().max()
    assert err <= tol * ref.abs().max(), f"{err} > {tol} * {ref.abs().max()}"


@pytest.mark.parametrize(("dtype", "tol"), PRECISIONS)
@pytest.mark.parametrize("model_cls", MODELS)
def test_compact_model_under_no_grad_autocast(cfg, model_cls, dtype, tol):  # noqa: F811
    """The standard inference recipe: ``eval(); no_grad(); autocast`` (the in-place residual path
    of fp32 inference must step aside, not crash or change the sum)."""
    torch.manual_seed(0)
    compact = model_cls(cfg).prune(random_masks(cfg, 3)).eval()
    with torch.no_grad():
        ref = outputs(compact)
        with torch.autocast("cpu", dtype=dtype):
            low = outputs(compact)
    _close(low, ref, tol)


@pytest.mark.parametrize(("dtype", "tol"), PRECISIONS)
def test_masked_equals_compact_under_autocast(cfg, dtype, tol):  # noqa: F811
    model_cls = MODELS[0]
    torch.manual_seed(0)
    model = model_cls(cfg).eval()
    masks = random_masks(cfg, 4)
    compact = model.prune(masks).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        masked, pruned = outputs(model, masks), outputs(compact)
    _close(masked, pruned.float(), tol)


def test_masked_training_step_under_bf16_autocast(cfg):  # noqa: F811
    """A pruning step as Lightning's ``bf16-mixed`` runs it: sampled masks, loss, backward."""
    model_cls = MODELS[0]
    torch.manual_seed(0)
    model = model_cls(cfg).train()
    masks = CoFiMasks(cfg)
    z = masks.sample(masks.noise(torch.Generator().manual_seed(1)))
    ids = torch.randint(1, 99, (4, 13))
    labels = torch.tensor([0, 1, 2, 1])
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**inputs, masks=z).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [g.log_alpha.grad for g in masks.gates.values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the masks learn under bf16 too
