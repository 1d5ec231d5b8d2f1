"""The pruning-exactness demo (`make demo` before the training pipeline) runs and is exact."""

from cofi_lightning.tools.demo import main


def test_demo_on_two_layer_minilm(minilm_l2_dir):
    report = main([str(minilm_l2_dir)])
    assert report["encoder_params_predicted"] == report["encoder_params_real"]
    assert report["encoder_params_real"] < report["encoder_params_full"]
    assert report["max_abs_diff_masked_vs_compact"] <= 1e-4
    assert report["max_abs_diff_after_reload"] == 0
    assert 0 < report["sparsity"] < 1
