"""What a finished run records: ``results.json`` and its operating points, as typed records.

:class:`Results` is the run's shared fields and its :class:`PointResult` s (the export stage's
``DONE.json`` is a point plus ``structure_plot``). With a single target the point's fields also
sit at the top level of ``results.json``; a file without ``operating_points`` (the older layout)
reads as one point. :func:`flat_points` and :func:`result_points` serve readers of a few keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cofi_lightning.config.resolvers import target_label
from cofi_lightning.run.operating_points import OperatingPoint, operating_points


@dataclass(frozen=True)
class RuntimeResult:
    """One runtime's measurement of an export (``cofi_lightning.deploy``).

    Attributes:
        runtime: ``torch-fp32``, ``ort-fp32`` (ONNX Runtime) or ``ort-int8`` (dynamic INT8).
        file: The model file it ran, in the export directory.
        metrics: Validation metrics through this runtime (``{metric: percent}``), computed by the
            same code as the export's own.
        size_mb: The file's size on disk (MB: 10^6 bytes).
        latency_ms: Median forward latency of ``batch`` x ``seq`` tokens on ``threads`` CPU
            threads (``cofi_lightning.latency.timing``).
    """

    runtime: str
    file: str
    metrics: dict[str, float]
    size_mb: float
    latency_ms: float
    batch: int
    seq: int
    threads: int


@dataclass(frozen=True)
class PointResult:
    """One operating point of a run, measured on its export.

    Attributes:
        target_sparsity: The point's target sparsity; None under ``pruning.constraint=latency``
            (the speed target is ``latency["target_speedup"]``).
        sparsity: ``1 - pruned / unpruned`` encoder parameters, counted on the export.
        params: ``{"unpruned": n, "pruned": n}`` encoder parameters.
        pruned: The export's validation metrics (``{metric: percent}``).
        structure: ``Structure.as_dict()`` of the export.
        latency: With ``pruning.constraint=latency``: ``target_speedup``, ``table_ms``,
            ``unpruned_table_ms``, ``table_speedup``, ``table_device``; else None.
        runtimes: With ``export.onnx``: the export through each runtime (torch fp32, ONNX
            Runtime fp32, and INT8 with ``export.quantize``); empty (and absent from the JSON)
            otherwise.
    """

    target_sparsity: float | None
    sparsity: float
    params: dict[str, int]
    pruned: dict[str, float]
    structure: dict[str, Any]
    export_dir: str
    latency: dict[str, Any] | None = None
    runtimes: list[RuntimeResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        """:func:`point_label` of this point."""
        return point_label(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointResult:
        """The point's fields of ``data`` (other keys, e.g. a DONE record's, are ignored)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["runtimes"] = [RuntimeResult(**r) for r in values.get("runtimes") or ()]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``runtimes`` only once measured (an export without ONNX files reads and
        writes as before they existed)."""
        out = asdict(self)
        if not self.runtimes:
            del out["runtimes"]
        return out


@dataclass(frozen=True)
class Results:
    """A run's ``results.json``.

    Attributes:
        teacher: The teacher's validation metrics (empty without a teacher).
        main_metric: The key of ``teacher`` / each point's ``pruned`` a sweep optimises.
        ablation: The ablation's name (None: full CoFi).
        fidelity: The fidelity preset's name (None: the defaults).
        stage_seconds: ``{stage: seconds}`` of every stage recorded.
        operating_points: One :class:`PointResult` per target, in the run's order.
    """

    task: str
    teacher: dict[str, float]
    main_metric: str
    ablation: str | None
    method: str
    constraint: str
    fidelity: str | None
    seed: int
    stage_seconds: dict[str, float | None]
    operating_points: list[PointResult]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: a single point's fields also at the top level."""
        shared = {f.name: getattr(self, f.name) for f in fields(self)}
        points = [point.to_dict() for point in shared.pop("operating_points")]
        top = {**shared, **points[0]} if len(points) == 1 else shared
        return {**top, "operating_points": points}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        """Read either layout (:func:`flat_points`)."""
        names = [f.name for f in fields(cls) if f.name != "operating_points"]
        points = [PointResult.from_dict(record) for record in flat_points(data)]
        return cls(**{name: data[name] for name in names}, operating_points=points)

    def objective(self) -> float:
        """The one number a Hydra sweeper optimises: the exports' main metric.

        A sparsity path exports one model per target; its objective is the mean of their main
        metrics (every point counts equally, so a sweep cannot win by sacrificing one target)."""
        scores = [point.pruned[self.main_metric] for point in self.operating_points]
        return sum(scores) / len(scores)


def point_label(point: dict[str, Any]) -> str:
    """A point record's target as run names write it: ``s0.6``, or ``x2.0`` for a speed target
    (read from its ``latency`` record, present only under the latency constraint)."""
    speedup = (point.get("latency") or {}).get("target_speedup")
    constraint = "latency" if speedup else "params"
    return target_label(point["target_sparsity"], None, constraint, speedup)


def flat_points(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat record per operating point of a ``results.json`` dict: the run's shared keys with
    the point's (unknown keys included)."""
    points = data.get("operating_points")
    shared = {k: v for k, v in data.items() if k != "operating_points"}
    if not points:
        return [shared]
    return [{**shared, **point} for point in points]


def result_points(data: dict[str, Any]) -> list[tuple[OperatingPoint, dict[str, Any]]]:
    """Each operating point of a ``results.json`` dict with its flat record (:func:`flat_points`);
    a single point's target may be None (a latency-constrained run)."""
    records = flat_points(data)
    points = operating_points([record.get("target_sparsity") for record in records])
    return list(zip(points, records, strict=True))
