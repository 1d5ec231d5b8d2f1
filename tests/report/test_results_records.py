"""``results.json`` as typed records: every committed file reads into
:class:`~cofi_lightning.run.results.Results` and writes back the same JSON (the layout the report,
the model card and the bench read), the older single-target layout included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cofi_lightning.run.results import Results, result_points

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO_ROOT / "docs" / "results").rglob("results.json"))


def test_both_layouts_are_committed():
    layouts = {"operating_points" in json.loads(p.read_text()) for p in COMMITTED}
    assert layouts == {True, False}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_a_committed_results_json_round_trips(path):
    data = json.loads(path.read_text())
    results = Results.from_dict(data)
    written = results.to_dict()
    if "operating_points" not in data:  # the older single-target file: its point is added
        (point,) = written.pop("operating_points")
        assert point == {k: data[k] for k in point}
    assert written == data
    points = [point for point, _ in result_points(data)]
    assert len(points) == len(results.operating_points)
    if len(points) > 1:  # a path: each point's files carry its target
        assert [p.suffix for p in points] == [
            f"_{r.target_sparsity:g}" for r in results.operating_points
        ]
