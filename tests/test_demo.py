"""The pruning-exactness demo (`make demo` before the training pipeline) runs and is exact."""

from cofi_lightning.tools.demo import main


def test_demo_on_two_layer_minilm(minilm_l2_dir):
    report = main([str(minilm_l2_dir)])
    assert report["encoder_params_predicted"] == report["encoder_params_real"]
    assert report["encoder_params_real"] < report["encoder_params_full"]
    assert report["max_abs_diff_masked_vs_compact"] <= 1e-4
    assert report["max_abs_diff_after_reload"] == 0
    assert 0 < report["sparsity"] < 1


def test_demo_reports_latency_as_median_and_spread_with_its_caveat(minilm_l2_dir, caplog):
    """One latency sample per model used to be printed as if it were a measurement."""
    with caplog.at_level("INFO", logger="cofi_lightning.tools.demo"):
        report = main([str(minilm_l2_dir)])
    assert report["latency_rounds"] >= 5
    for name in ("latency_ms_full", "latency_ms_compact", "speedup"):
        low, high = report[f"{name}_iqr"]
        assert 0 < low <= report[name] <= high
    caveat = [r.getMessage() for r in caplog.records if r.getMessage().startswith("latency:")]
    assert len(caveat) == 1
    assert "interleaved rounds" in caveat[0] and "not a benchmark" in caveat[0]
    assert "python -m cofi_lightning.tools.bench" in caveat[0]


def test_default_model_is_looked_up_in_the_shared_directory(tmp_path, monkeypatch):
    """``$COFI_SHARED_DIR`` moves the shared models for the demo as for training."""
    from cofi_lightning.tools.demo import HUB_FALLBACK, default_model

    monkeypatch.delenv("COFI_MODEL", raising=False)
    monkeypatch.setenv("COFI_SHARED_DIR", str(tmp_path))
    assert default_model() == HUB_FALLBACK  # no copy there
    (tmp_path / "models" / "all-MiniLM-L6-v2").mkdir(parents=True)
    assert default_model() == str(tmp_path / "models" / "all-MiniLM-L6-v2")
    monkeypatch.setenv("COFI_MODEL", "my/model")
    assert default_model() == "my/model"
