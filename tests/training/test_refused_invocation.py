"""A refused invocation (the run directory belongs to another config, or another live process holds
it) leaves that directory byte for byte as it was: Hydra's ``.hydra/*.yaml``, ``train.log`` and
everything else, so the report still tells the run's own story. The user still gets one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from cofi_lightning.config import config_identity, load_config
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.rundir import RunLock, claim
from cofi_lightning.tools.report.collect import collect_runs


def _job_config(compose_train, overrides: list[str], output_dir: Path):
    """The config Hydra's ``run_job`` sees: composed, with its output dir set."""
    cfg = compose_train([*overrides, "hydra.job.name=train"], hydra_cfg=True)
    with open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(output_dir)
    return cfg


def _hydra_writes(cfg) -> tuple[str | None, str]:
    """Where Hydra would save ``.hydra/`` and the job log for this job."""
    return cfg.hydra.output_subdir, cfg.hydra.job_logging.handlers.file.filename


def test_hydra_writes_nothing_into_a_run_dir_that_refuses_the_job(
    compose_train, tiny_overrides, tmp_path
):
    run_dir = tmp_path / "run"
    same = tiny_overrides(run_dir)
    other = [*same, "pruning.reg_lr=0.3"]
    log_file = f"{run_dir}/train.log"
    assert _hydra_writes(_job_config(compose_train, same, run_dir)) == (".hydra", log_file)
    # The run's identity as the pipeline records it (from the typed config).
    structured = OmegaConf.structured(load_config(compose_train(same)))
    claim(run_dir, config_identity(structured), "auto")

    assert _hydra_writes(_job_config(compose_train, same, run_dir)) == (".hydra", log_file)
    assert _hydra_writes(_job_config(compose_train, other, run_dir)) == (None, "/dev/null")
    with RunLock(run_dir):  # a live run: even its own config is refused
        assert _hydra_writes(_job_config(compose_train, same, run_dir)) == (None, "/dev/null")
    assert _hydra_writes(_job_config(compose_train, same, run_dir)) == (".hydra", log_file)


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file under ``run_dir`` (hidden ones included) and its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _report(run_dir: Path) -> tuple[list, list[tuple[str, str]]]:
    """What the report makes of ``run_dir``: its runs' rows and its problems' (status, reason)."""
    runs, problems = collect_runs(run_dir)
    return [r.row() for r in runs], [(p.status, p.reason) for p in problems]


def _refused(train_cli, args: list[str], reason: str) -> None:
    proc = train_cli(*args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    assert out.count(reason) == 1 and "Traceback" not in out, out[-4000:]


@pytest.mark.slow
def test_refused_invocations_leave_the_run_dir_as_it_was(
    compose_train, tiny_overrides, train_cli, tmp_path
):
    run_dir = tmp_path / "run"
    same = tiny_overrides(run_dir)
    other = [*same, "pruning.reg_lr=0.3", "stages=[teacher,prune]"]  # another identity

    # A live run: one stage done, its process (this test) holds the lock.
    train_cli(*same, "stages=[teacher]")
    with RunLock(run_dir):
        before, report = _files(run_dir), _report(run_dir)
        assert report[1] and report[1][0][0] == "missing"  # no results.json yet, no error
        for args, reason in ((same, "is in use by pid"), (other, "belongs to another config")):
            _refused(train_cli, args, reason)
            assert _files(run_dir) == before
            assert _report(run_dir) == report

    # A finished run (the remaining stages in this process), invoked with another config.
    train(compose_train(same))
    before, report = _files(run_dir), _report(run_dir)
    assert len(report[0]) == 1 and report[1] == []
    _refused(train_cli, other, "belongs to another config")
    assert _files(run_dir) == before
    assert _report(run_dir) == report
