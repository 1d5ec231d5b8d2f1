"""``python -m cofi_lightning.tools.bench``: a consistent report, run-dir discovery, clear errors,
and an exact inference rewrite, on tiny random BERTs (latencies are measured but never asserted)."""

import dataclasses
import json
import statistics
import sys

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

from cofi_lightning.core.masks import Masks
from cofi_lightning.latency.flops import config_forward_flops
from cofi_lightning.latency.timing import BenchError, make_inputs, time_models
from cofi_lightning.modeling import (
    CoFiBertConfig,
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
)
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.tools.bench.__main__ import main, parse_args
from cofi_lightning.tools.bench.compare import compare
from cofi_lightning.tools.bench.sources import (
    BERT_BASE,
    S95_FFN,
    S95_HEADS,
    S95_HIDDEN,
    discover,
)

from tiny_bert import tiny_bert_kwargs

FAST = ["batch=2", "seq=8", "warmup=0", "rounds=2", "threads=1"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny forwards on two threads of a busy machine spend ~0.2 s each in thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_masks(layers: int = 2) -> Masks:
    """Heads, FFN dims and hidden dims removed, including a whole attention and a whole FFN."""
    head = torch.ones(layers, 4)
    head[0, :3] = 0
    head[1] = 0
    inter = torch.ones(layers, 48)
    inter[0, 5:] = 0  # 5 dims: padded to 16 by the rewrite
    inter[-1] = 0
    hidden = torch.ones(32)
    hidden[::5] = 0  # hidden 25: output projections padded to 32 by the rewrite
    return Masks(hidden=hidden, head=head, intermediate=inter)


def tiny_pair(cls=CoFiBertForSequenceClassification, **overrides):
    """``(pruned, unpruned)`` tiny models of class ``cls``."""
    torch.manual_seed(0)
    model = cls(CoFiBertConfig(**tiny_bert_kwargs(num_labels=3, **overrides))).eval()
    return model.prune(tiny_masks(model.config.num_hidden_layers)).eval(), model


@pytest.fixture
def run_dir(tmp_path):
    """A finished run: ``pruned_model/``, ``results.json`` and Hydra's config whose
    ``model.pretrained`` is relative to the launch dir recorded in ``.hydra/hydra.yaml``."""
    launch = tmp_path / "repo"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**tiny_bert_kwargs())).save_pretrained(
        launch / "models" / "tiny-bert"
    )
    run = tmp_path / "outputs" / "sst2_s0.5"
    pruned, _ = tiny_pair()
    pruned.save_pretrained(run / "pruned_model")
    # export_dir as written by a run launched elsewhere: the discovery falls back to pruned_model/
    (run / "results.json").write_text(
        json.dumps({"task": "sst2", "export_dir": "outputs/sst2_s0.5/pruned_model"})
    )
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(
        "task:\n  name: sst2\nmodel:\n  pretrained: models/tiny-bert\n"
    )
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {launch}\n")
    return run


def test_report_is_consistent():
    pruned, base = tiny_pair()
    report = compare(pruned, base, batch=2, seq=8, warmup=1, rounds=3)
    for key in ("device", "dtype", "batch", "seq", "threads", "speedup", "flop_ideal_speedup"):
        assert key in report
    assert (report["device"], report["dtype"], report["batch"], report["seq"]) == (
        "cpu",
        "fp32",
        2,
        8,
    )
    assert report["threads"] == torch.get_num_threads()
    b, p = report["baseline"], report["pruned"]
    for r in (b, p):
        assert len(r["latency_ms_rounds"]) == 3
        assert r["latency_ms"] == statistics.median(r["latency_ms_rounds"])
        assert r["page_faults_per_forward"] is not None
    assert report["speedup"] == pytest.approx(b["latency_ms"] / p["latency_ms"])
    assert (b["encoder_params"], p["encoder_params"]) == (
        base.num_encoder_params(),
        pruned.num_encoder_params(),
    )
    c = pruned.config
    assert p["encoder_params"] == Structure.from_config(c).params(c.attention_head_size)
    assert b["sparsity"] == 0.0
    assert p["sparsity"] == pytest.approx(1 - p["encoder_params"] / b["encoder_params"])
    ideal = config_forward_flops(base.config, 2, 8) / config_forward_flops(pruned.config, 2, 8)
    assert report["flop_ideal_speedup"] == pytest.approx(ideal)
    assert report["achieved_fraction_of_ideal"] == pytest.approx(report["speedup"] / ideal)
    assert p["structure"]["num_heads"] == [1, 0] and p["structure"]["hidden_size"] == 25
    json.dumps(report)  # the CLI writes it as is


def test_run_dir_discovery(run_dir):
    found = discover(run=str(run_dir))
    assert found.pruned == str(run_dir / "pruned_model")
    assert found.baseline.endswith("repo/models/tiny-bert")  # via hydra.runtime.cwd
    assert found.task == "sst2"
    assert discover(pruned=str(run_dir / "pruned_model")) == found
    assert discover(pruned=str(run_dir)) == found
    # train.py's resolved config.yaml wins over Hydra's copy
    (run_dir / "config.yaml").write_text(f"model:\n  pretrained: {run_dir / 'pruned_model'}\n")
    assert discover(run=str(run_dir)).baseline == str(run_dir / "pruned_model")
    # a name that is no local dir is a hub name
    (run_dir / "config.yaml").write_text(
        "model:\n  pretrained: google/bert_uncased_L-2_H-128_A-2\n"
    )
    assert discover(run=str(run_dir)).baseline == "google/bert_uncased_L-2_H-128_A-2"


def test_cli_on_a_run_dir_writes_the_json(run_dir, capsys):
    main([f"run={run_dir}", *FAST])
    printed = capsys.readouterr().out
    assert "speedup" in printed and "FLOP-ideal" in printed
    report = json.loads((run_dir / "speed_cpu_fp32.json").read_text())
    assert report["task"] == "sst2" and report["seq"] == 8 and report["threads"] == 1
    assert report["pruned"]["sparsity"] > 0.3
    assert report["model_class"] == "CoFiBertForSequenceClassification"


def test_cli_on_a_path_run_measures_every_export(run_dir, capsys):
    """A sparsity path's run dir: each operating point's export gets its own speed file, and the
    report attaches each file to its point."""
    from cofi_lightning.tools.report import collect_runs

    torch.manual_seed(1)
    wide = CoFiBertForSequenceClassification(CoFiBertConfig(**tiny_bert_kwargs(num_labels=3)))
    small = dataclasses.replace(tiny_masks(), hidden=None)  # wider than tiny_masks()
    wide.prune(small).save_pretrained(run_dir / "pruned_model_0.3")
    (run_dir / "pruned_model").rename(run_dir / "pruned_model_0.6")
    point = {"params": {}, "structure": {}, "latency": None}
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "task": "sst2",
                "main_metric": "accuracy",
                "teacher": {"accuracy": 90.0},
                "operating_points": [
                    {**point, "target_sparsity": 0.3, "sparsity": 0.31, "pruned": {"accuracy": 89}},
                    {**point, "target_sparsity": 0.6, "sparsity": 0.6, "pruned": {"accuracy": 85}},
                ],
            }
        )
    )
    main([f"run={run_dir}", *FAST])
    assert capsys.readouterr().out.count("wrote ") == 2
    reports = {
        t: json.loads((run_dir / f"speed_cpu_fp32_{t}.json").read_text()) for t in (0.3, 0.6)
    }
    assert reports[0.3]["pruned"]["source"] == str(run_dir / "pruned_model_0.3")
    assert reports[0.3]["pruned"]["sparsity"] < reports[0.6]["pruned"]["sparsity"]
    assert not (run_dir / "speed_cpu_fp32.json").exists()
    runs, _ = collect_runs(run_dir)
    assert [(r.ablation, r.target_sparsity, r.speedup) for r in runs] == [
        ("full path", 0.3, reports[0.3]["speedup"]),
        ("full path", 0.6, reports[0.6]["speedup"]),
    ]


def test_qa_models_default_to_seq_384(tmp_path):
    pruned, _ = tiny_pair(CoFiBertForQuestionAnswering, max_position_embeddings=384)
    pruned.save_pretrained(tmp_path / "pruned")
    BertForQuestionAnswering(
        BertConfig(**tiny_bert_kwargs(max_position_embeddings=384))
    ).save_pretrained(tmp_path / "base")
    out = tmp_path / "speed.json"
    main(
        [
            f"pruned={tmp_path / 'pruned'}",
            f"baseline={tmp_path / 'base'}",
            f"out={out}",
            "batch=1",
            "warmup=0",
            "rounds=1",
        ]
    )
    report = json.loads(out.read_text())
    assert report["seq"] == 384 and report["compile"] is False
    assert report["model_class"] == "CoFiBertForQuestionAnswering"


def test_cuda_unavailable_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pruned, base = tiny_pair()
    with pytest.raises(BenchError, match="device=cuda but torch.cuda.is_available"):
        compare(pruned, base, device="cuda", batch=2, seq=8)
    with pytest.raises(SystemExit, match="device=cpu"):  # before any model is built or loaded
        main(["synthetic=s95", "device=cuda"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pruned={tmp}/missing", "baseline=x"], "no such directory"),
        (["pruned={tmp}", "baseline={tmp}"], "not a Hugging Face model dir"),
        (["run={tmp}"], "has no exported model"),
        (["pruned={tmp}/model"], "no baseline"),
        (
            ["pruned={tmp}/model", "baseline={tmp}/gpt2"],
            "not an encoder family cofi-lightning prunes",
        ),
        (["pruned={tmp}/model", "baseline={tmp}/qa"], "does not load as a CoFiBertForSequence"),
    ],
)
def test_bad_inputs_name_the_problem(tmp_path, args, message):
    pruned, _ = tiny_pair()
    pruned.save_pretrained(tmp_path / "model")
    tiny_pair(CoFiBertForQuestionAnswering)[1].save_pretrained(tmp_path / "qa")
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SystemExit, match=message):
        main([a.format(tmp=tmp_path) for a in args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run=x", "colour=red"], "unknown key(s): colour"),
        (["run=x", "--colour", "red"], "unknown key(s): colour"),
        (["synthetic=s95", "pruned=x"], "drop run="),
        (["synthetic=s95", "compile=maybe"], "argument --compile: expected true or false"),
        (["synthetic=s95", "dtype=fp16"], "argument --dtype: invalid choice: 'fp16'"),
        (["synthetic=s95", "batch=0"], "argument --batch: must be an integer >= 1, got '0'"),
        (["synthetic=s96"], "argument --synthetic: must be s95"),
        ([], "give the models: run=<run_dir>"),
    ],
)
def test_bad_arguments_exit_2_naming_the_key(args, message, capsys):
    """argparse's errors, before any model is loaded: status 2, usage and the reason on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m cofi_lightning.tools.bench") and message in err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    for key, words in [
        ("run", "a finished training run"),
        ("pruned", "an exported pruned model dir"),
        ("baseline", "the unpruned model"),
        ("synthetic", "95% sparse structure"),
        ("device", "cpu, cuda or cuda:<i>"),
        ("dtype", "{bf16,fp32} precision of both models (default: fp32)"),
        ("batch", "batch size (default: 128)"),
        ("seq", "384 for SQuAD / QA models"),
        ("warmup", "2 on CPU, 10 on CUDA"),
        ("rounds", "7 on CPU, 50 on CUDA"),
        ("threads", "CPU threads"),
        ("compile", "torch.compile"),
        ("out", "speed_<device>_<dtype>.json"),
    ]:
        assert f"--{key}" in text and words in text, key
    assert "may also be written key=value" in text


def test_key_value_and_option_spellings_agree():
    dotlist = parse_args(["run=r", "batch=32", "threads=2", "rounds=5", "compile=true"])
    options = parse_args(["--run", "r", "--batch", "32", "--threads=2", "--rounds", "5"])
    assert dotlist == {**options, "compile": True}
    assert options["compile"] is False and parse_args(["run=r", "--compile"])["compile"] is True
    assert (dotlist["warmup"], dotlist["seq"], dotlist["device"]) == (2, None, "cpu")
    cuda = parse_args(["synthetic=s95", "device=cuda"])
    assert (cuda["warmup"], cuda["rounds"], cuda["batch"]) == (10, 50, 128)
    assert parse_args(["pruned=p", "baseline=b", "out=o.json"])["out"] == "o.json"


def test_run_dir_without_config_asks_for_a_baseline(run_dir):
    (run_dir / ".hydra" / "config.yaml").unlink()
    with pytest.raises(BenchError, match="pass baseline="):
        discover(run=str(run_dir))


def test_compare_rejects_unfair_pairs():
    pruned, base = tiny_pair()
    qa, _ = tiny_pair(CoFiBertForQuestionAnswering)
    with pytest.raises(BenchError, match="same task model"):
        compare(qa, base, batch=1, seq=8)
    with pytest.raises(BenchError, match="exceeds"):
        compare(pruned, base, batch=1, seq=65)
    inputs = make_inputs(1, 8, 99, torch.device("cpu"))
    with pytest.raises(ValueError, match="eval mode"):
        time_models({"pruned": pruned.train()}, inputs, warmup=0, rounds=1)


def test_synthetic_structure_is_95_percent_sparse():
    d = BERT_BASE["hidden_size"] // BERT_BASE["num_attention_heads"]
    dense = Structure(768, (12,) * 12, (3072,) * 12).params(d)
    s95 = Structure(S95_HIDDEN, tuple(S95_HEADS), tuple(S95_FFN)).params(d)
    assert 0.945 < 1 - s95 / dense < 0.955
    assert parse_args(["synthetic=s95"])["synthetic"] is True


def test_a_report_that_cannot_be_written_is_printed_first(run_dir, capsys):
    """Read-only storage: the measurement is on the screen, then one line names the file and
    where else it could be written (it used to end in a PermissionError traceback, table lost)."""
    from read_only import read_only

    with read_only(run_dir), pytest.raises(SystemExit) as exit_:
        main([f"run={run_dir}", *FAST])
    message = str(exit_.value.code)
    assert "\n" not in message and message.startswith("error: cannot write")
    assert str(run_dir / "speed_cpu_fp32.json") in message
    assert "out=outputs/bench/speed_cpu_fp32.json" in message
    printed = capsys.readouterr().out
    assert "speedup" in printed and "FLOP-ideal" in printed
    assert "wrote" not in printed


def test_without_a_run_the_report_goes_under_outputs_bench(tmp_path, monkeypatch, capsys):
    """``synthetic=s95`` (no run directory) used to drop ``speed_cpu_fp32.json`` into the working
    directory; it goes to ``outputs/bench/`` there and the path is printed."""
    import cofi_lightning.tools.bench.__main__ as cli

    monkeypatch.setattr(cli, "synthetic_pair", tiny_pair)  # BERT-base takes seconds to build
    monkeypatch.chdir(tmp_path)
    main(["synthetic=s95", *FAST])
    assert not (tmp_path / "speed_cpu_fp32.json").exists()
    written = tmp_path / "outputs" / "bench" / "speed_cpu_fp32.json"
    assert json.loads(written.read_text())["pruned"]["source"] == "synthetic s95 (random weights)"
    assert "wrote outputs/bench/speed_cpu_fp32.json" in capsys.readouterr().out


def test_runtime_table_of_dense_torch_and_the_export_through_each_runtime(run_dir, capsys):
    """``runtime=``: one table, dense PyTorch first (speedup 1), each runtime's size its file's
    and its metric as the run recorded it; the export's ONNX files must exist."""
    pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    from cofi_lightning.deploy.measure import write_onnx

    export = run_dir / "pruned_model"
    args = [f"run={run_dir}", "runtime=torch,ort,ort-int8", *FAST]
    with pytest.raises(
        SystemExit, match="has no model.onnx, model.int8.onnx.*cofi_lightning.deploy"
    ):
        main(args)
    write_onnx(CoFiBertForSequenceClassification.from_pretrained(export).eval(), export, "int8")
    recorded = {"torch-fp32": 81.0, "ort-fp32": 81.0, "ort-int8": 80.5}
    runtimes = [{"runtime": k, "metrics": {"accuracy": v}} for k, v in recorded.items()]
    results = json.loads((run_dir / "results.json").read_text())
    results.update(main_metric="accuracy", teacher={"accuracy": 85.0}, runtimes=runtimes)
    (run_dir / "results.json").write_text(json.dumps(results))
    main(args)
    printed = capsys.readouterr().out
    assert "threads=1" in printed and "accuracy" in printed
    report = json.loads((run_dir / "runtimes_cpu_b2.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == [
        "dense torch-fp32",
        "pruned torch-fp32",
        "pruned ort-fp32",
        "pruned ort-int8",
    ]
    assert (report["batch"], report["seq"], report["threads"]) == (2, 8, 1)
    dense_ms = rows["dense torch-fp32"]["latency_ms"]
    for name, row in rows.items():
        assert row["speedup"] == pytest.approx(dense_ms / row["latency_ms"])
        assert f"{row['speedup']:.2f}x" in printed and name in printed
    assert rows["dense torch-fp32"]["metric"] == 85.0  # the teacher's
    assert [rows[f"pruned {k}"]["metric"] for k in recorded] == list(recorded.values())
    files = {"torch-fp32": "model.safetensors", "ort-fp32": "model.onnx"}
    files["ort-int8"] = "model.int8.onnx"
    for runtime, file in files.items():
        size = (export / file).stat().st_size / 1e6
        assert rows[f"pruned {runtime}"]["size_mb"] == pytest.approx(size)


def test_runtime_without_the_deploy_extra_names_it(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SystemExit, match=r'runtime=ort.*pip install -e "\.\[deploy\]"'):
        main([f"run={run_dir}", "runtime=ort", *FAST])


class _Recorder(torch.nn.Module):
    """A model that records each call's name into a shared list."""

    def __init__(self, name: str, calls: list[str]) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, **_):
        self.calls.append(self.name)


def test_models_of_different_runtimes_are_timed_in_blocks_of_their_own():
    """Interleaved: one forward of each per round, the order alternating. Blocked (models of
    different runtimes): each model's warm-up and rounds in one block, two passes of opposite
    order splitting the rounds; every model gets all its rounds either way."""
    inputs = make_inputs(1, 4, 10, torch.device("cpu"))
    for interleave, expected in [
        (True, ["a", "b", "b", "a", "a", "b", "b", "a"]),
        (False, ["a", "a", "a", "b", "b", "b", "b", "b", "a", "a"]),
    ]:
        calls: list[str] = []
        models = {n: _Recorder(n, calls).eval() for n in "ab"}
        timings = time_models(models, inputs, warmup=1, rounds=3, interleave=interleave)
        assert calls == expected, interleave
        assert all(len(t.rounds_ms) == 3 for t in timings.values())
