"""GPU readiness (``-m gpu``; deselected by default, run by ``scripts/gpu_check.sh``): a masked bf16
training step, the exported model's bf16 inference and the benchmark's CUDA-event timing."""

import pytest
import torch

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency.timing import make_inputs, resolve_device, time_models
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

from tiny_bert import tiny_bert_kwargs

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail("-m gpu needs a CUDA device (torch.cuda.is_available() is False)")
    return torch.device("cuda")


def _model(**overrides) -> CoFiBertForSequenceClassification:
    torch.manual_seed(0)
    cfg = CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=4, num_labels=2, **overrides))
    return CoFiBertForSequenceClassification(cfg)


def test_masked_bf16_training_step_on_cuda(cuda):
    model = _model(hidden_dropout_prob=0.1).to(cuda).train()
    masks = CoFiMasks(model.config).to(cuda)
    z = masks.sample(masks.noise(torch.Generator().manual_seed(0)))
    ids = torch.randint(1, 99, (8, 16), device=cuda)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=torch.randint(0, 2, (8,), device=cuda), masks=z)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(g.log_alpha.grad).all() for g in masks.gates.values())


def test_exported_model_bf16_inference_on_cuda(cuda, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _model()
    masks = CoFiMasks(model.config).deterministic()
    model.prune(masks).save_pretrained(tmp_path)
    export = AutoModelForSequenceClassification.from_pretrained(tmp_path).to(cuda).eval()
    ids = torch.randint(1, 99, (8, 16), device=cuda)
    with torch.no_grad():
        ref = export(input_ids=ids).logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = export(input_ids=ids).logits
    assert (low.float() - ref).abs().max() <= 0.05 * ref.abs().max()


def test_bench_times_with_cuda_events(cuda):
    model = _model().to(cuda).eval()
    inputs = make_inputs(4, 32, model.config.vocab_size, resolve_device("cuda"))
    timings = time_models({"m": model}, inputs, warmup=1, rounds=3)
    assert len(timings["m"].rounds_ms) == 3 and all(t > 0 for t in timings["m"].rounds_ms)


def test_latency_profile_on_cuda(cuda):
    """The latency table of a tiny shape on the GPU (CUDA events), bf16, and its calibration."""
    from cofi_lightning.latency.profile import profile

    config = CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=2, num_labels=2))
    table = profile(config, device="cuda", dtype="bf16", batch=8, seq=32, rounds=3, progress=False)
    assert table.meta["device"] == "cuda" and table.meta["dtype"] == "bf16"
    assert table.meta["device_name"] == torch.cuda.get_device_name(cuda)
    assert table.full_ms() > 0 and table.calibration > 0
    assert all(ms >= 0 for row in table.attention + table.ffn for ms in row)
