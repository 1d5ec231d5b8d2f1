"""The end-of-run summary's suggested ``bench`` command runs as printed, whatever the run's path."""

import shlex

from cofi_lightning.run.pipeline import summary_table
from cofi_lightning.tools.bench.__main__ import parse_args


def _results(export_dir: str) -> dict:
    """A single-target results.json as far as the summary reads it (no speed measured)."""
    return {
        "task": "sst2",
        "target_sparsity": 0.9,
        "main_metric": "accuracy",
        "teacher": {"accuracy": 91.2},
        "pruned": {"accuracy": 88.4},
        "sparsity": 0.9013,
        "params": {"pruned": 2_100_000, "unpruned": 21_300_000},
        "structure": {"hidden_size": 384, "num_heads": [2, 1], "intermediate_sizes": [96, 0]},
        "export_dir": export_dir,
    }


def test_the_suggested_bench_command_survives_spaces_in_the_run_dir(tmp_path):
    run_dir = tmp_path / "my runs" / "sst2 s0.9"
    table = summary_table(_results(str(run_dir / "pruned_model")), run_dir)
    line = next(row for row in table.splitlines() if "not measured" in row)
    argv = shlex.split(line.split("not measured: ", 1)[1])  # what a shell makes of it
    assert argv[:3] == ["python", "-m", "cofi_lightning.tools.bench"]
    assert parse_args(argv[3:])["run"] == str(run_dir)
