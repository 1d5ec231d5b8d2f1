"""The typed registry of the nine CoFi evaluation tasks (eight GLUE tasks and SQuAD v1.1): what is
declared about a task. It loads no data (``sources.py``) and computes no metric
(``cofi_lightning.training.metrics``); a test checks that ``conf/task/<name>.yaml`` agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Metric names, one spelling each (the keys ``cofi_lightning.training.metrics`` returns).
GLUE_METRIC_NAMES = ("accuracy", "f1", "matthews_correlation", "pearson", "spearman")
SQUAD_METRIC_NAMES: tuple[str, ...] = ("exact_match", "f1")


@dataclass(frozen=True)
class TaskSpec:
    """Everything the data and metric code needs to know about one task.

    Attributes:
        family: ``"glue"`` (classification / regression) or ``"squad"`` (span extraction).
        hub_config: Hub configuration name (``None`` when the dataset has one configuration).
        text_columns: Input text columns, in the order they are fed to the tokenizer.
        num_labels: Classes; 1 for regression (STS-B), 2 for SQuAD (start and end logits).
        metrics: Metric keys reported for this task, in percent.
        main_metric: The metric used for model selection; computed on ``eval_splits[0]``.
        max_seq_length: The paper's maximum sequence length in tokens.
        eval_names: Short names of ``eval_splits`` used in metric keys (``mnli_m``, ``mnli_mm``).
        num_rows: ``(split, rows)`` of the official split sizes; a full split of another size is
            refused (it would be a truncated or wrong file).
        label_values: The allowed class ids (hub schema, never remapped).
        label_range: Closed interval of allowed regression targets (STS-B similarity score).
        label_names: Class names by id (the hub's ``ClassLabel`` names), written into every saved
            model's ``id2label`` so pipelines answer ``positive``, not ``LABEL_1``.
    """

    name: str
    family: Literal["glue", "squad"]
    hub_path: str
    hub_config: str | None
    text_columns: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    main_metric: str
    max_seq_length: int
    eval_splits: tuple[str, ...]
    eval_names: tuple[str, ...]
    num_rows: tuple[tuple[str, int], ...]
    label_values: tuple[int, ...] = ()
    label_range: tuple[float, float] | None = None
    label_names: tuple[str, ...] = ()
    train_split: str = "train"

    def __post_init__(self) -> None:
        allowed = SQUAD_METRIC_NAMES if self.family == "squad" else GLUE_METRIC_NAMES
        unknown = [m for m in self.metrics if m not in allowed]
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown metrics {unknown}; allowed {allowed}")
        if self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: main_metric {self.main_metric!r} not in metrics")
        if len(self.eval_names) != len(self.eval_splits):
            raise ValueError(f"task {self.name!r}: eval_names and eval_splits differ in length")
        if self.family == "glue" and self.is_regression == (self.label_range is None):
            raise ValueError(f"task {self.name!r}: a regression task needs label_range, others not")

    def id2label(self) -> dict[int, str] | None:
        """``{class id: name}`` for a model config, or None (regression, span extraction)."""
        return dict(enumerate(self.label_names)) if self.label_names else None

    @property
    def is_regression(self) -> bool:
        """True for STS-B (one output, float targets)."""
        return self.family == "glue" and self.num_labels == 1

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits the task uses: the training split, then the evaluation splits."""
        return (self.train_split, *self.eval_splits)

    @property
    def main_metric_key(self) -> str:
        """Key of the model-selection metric: ``accuracy``, or ``mnli_m/accuracy`` for MNLI."""
        if len(self.eval_splits) == 1:
            return self.main_metric
        return f"{self.eval_names[0]}/{self.main_metric}"

    def expected_rows(self, split: str) -> int | None:
        """Official number of rows of ``split``, or ``None`` if unknown."""
        return dict(self.num_rows).get(split)


def _glue(
    name: str,
    columns: tuple[str, ...],
    metrics: tuple[str, ...],
    main: str,
    rows: dict[str, int],
    labels: tuple[str, ...] = (),
    **kw: Any,
) -> TaskSpec:
    """A GLUE task: class ids ``0..n-1`` named ``labels`` (none: STS-B's one regression output),
    evaluated on ``validation`` unless ``kw`` says otherwise."""
    kw = {"eval_splits": ("validation",), "eval_names": (name,), **kw}
    return TaskSpec(
        name=name,
        family="glue",
        hub_path="nyu-mll/glue",
        hub_config=name,
        text_columns=columns,
        num_labels=len(labels) or 1,
        metrics=metrics,
        main_metric=main,
        max_seq_length=128,  # CoFi's GLUE runs: max_seq_length 128 for every task
        num_rows=tuple(rows.items()),
        label_values=tuple(range(len(labels))),
        label_names=labels,
        **kw,
    )


# Main metrics follow the CoFi code's model-selection keys (accuracy for MRPC/QQP, Matthews for
# CoLA); STS-B uses Spearman, the figure the pruning papers tabulate.
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _glue(
            "sst2",
            ("sentence",),
            ("accuracy",),
            "accuracy",
            {"train": 67349, "validation": 872},
            ("negative", "positive"),
        ),
        _glue(
            "mnli",
            ("premise", "hypothesis"),
            ("accuracy",),
            "accuracy",
            {"train": 392702, "validation_matched": 9815, "validation_mismatched": 9832},
            ("entailment", "neutral", "contradiction"),  # the hub's order
            eval_splits=("validation_matched", "validation_mismatched"),
            eval_names=("mnli_m", "mnli_mm"),
        ),
        _glue(
            "qnli",
            ("question", "sentence"),
            ("accuracy",),
            "accuracy",
            {"train": 104743, "validation": 5463},
            ("entailment", "not_entailment"),
        ),
        _glue(
            "qqp",
            ("question1", "question2"),
            ("accuracy", "f1"),
            "accuracy",
            {"train": 363846, "validation": 40430},
            ("not_duplicate", "duplicate"),
        ),
        _glue(
            "cola",
            ("sentence",),
            ("matthews_correlation",),
            "matthews_correlation",
            {"train": 8551, "validation": 1043},
            ("unacceptable", "acceptable"),
        ),
        _glue(
            "rte",
            ("sentence1", "sentence2"),
            ("accuracy",),
            "accuracy",
            {"train": 2490, "validation": 277},
            ("entailment", "not_entailment"),
        ),
        _glue(
            "mrpc",
            ("sentence1", "sentence2"),
            ("accuracy", "f1"),
            "accuracy",
            {"train": 3668, "validation": 408},
            ("not_equivalent", "equivalent"),
        ),
        _glue(
            "stsb",
            ("sentence1", "sentence2"),
            ("pearson", "spearman"),
            "spearman",
            {"train": 5749, "validation": 1500},
            label_range=(0.0, 5.0),
        ),
        TaskSpec(
            name="squad",
            family="squad",
            hub_path="rajpurkar/squad",
            hub_config=None,
            text_columns=("question", "context"),
            num_labels=2,
            metrics=SQUAD_METRIC_NAMES,
            main_metric="f1",
            max_seq_length=384,
            eval_splits=("validation",),
            eval_names=("squad",),
            num_rows=(("train", 87599), ("validation", 10570)),
        ),
    )
}

GLUE_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.family == "glue")


def get_task(name: str) -> TaskSpec:
    """The task named ``name`` (case-insensitive, ``sst-2``/``sts-b`` spellings accepted); an
    unknown name raises ``KeyError`` listing the known ones."""
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]
