"""The committed studies regenerate from the repository alone: every run a committed report was
collected from under ``docs/results/`` is in the repository (a fresh clone has exactly what git
tracks), and collecting it again gives those runs without problems (and the teachers' curves)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cofi_lightning.tools.report import collect_runs
from cofi_lightning.tools.report.curves import read_teacher_curve

REPO_ROOT = Path(__file__).resolve().parents[2]


def _sources(report: Path) -> list[Path]:
    """The run directories named on the report's 'Collected from' line that lie in the
    repository's ``docs/results`` (older reports name runs that were never collected)."""
    line = next(x for x in report.read_text().splitlines() if x.startswith("Collected from"))
    names = re.findall(r"`([^`]+)`", line)
    return [REPO_ROOT / n for n in names if n.startswith("docs/results/")]


STUDIES = sorted(
    p.parent for p in (REPO_ROOT / "docs" / "results").glob("*/report.md") if _sources(p)
)


def test_the_study_reports_are_found():
    assert "sst2_study" in [s.name for s in STUDIES]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_a_committed_report_regenerates_from_the_repository(study):
    sources = _sources(study / "report.md")
    # a source is a finished run, or a teacher-only run whose curve the report draws
    teachers = [s for s in sources if read_teacher_curve(s) and not (s / "results.json").exists()]
    for source in set(sources) - set(teachers):
        assert (source / "results.json").is_file(), f"{source} is not in the repository"
    runs, problems = collect_runs(sources)
    assert not problems
    assert {r.run_dir for r in runs} == set(sources) - set(teachers)
    for teacher in teachers:
        assert read_teacher_curve(teacher).kept is not None  # a finished stage with its log
