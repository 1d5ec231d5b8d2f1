"""The SST-2 / MiniLM-L6 study's tables from its records (docs/results/sst2_study/README.md).

The jobs themselves are ``python train.py -m experiment=study_sst2_cpu ...`` sweeps; each runs in
``runs/sst2_study/<job>``. This script does what a sweep cannot:

    python scripts/sst2_study.py collect    # copy finished jobs' records into docs/results/...
    python scripts/sst2_study.py budgets    # full CoFi against budget (markdown)
    python scripts/sst2_study.py path       # the sparsity path against separate runs
    python scripts/sst2_study.py latency    # speed targets: target against measured speedup
    python scripts/sst2_study.py posttrain  # post-training pruning: targets, accuracy, seconds
    python scripts/sst2_study.py compare --budget 1000  # variants against full CoFi over seeds
    python scripts/sst2_study.py report     # report.md, plots and curves of the study's folder
    python scripts/sst2_study.py bert-base runs/models/bert_base_random  # random BERT-base

The tables read the collected records (``--records``, default ``docs/results/sst2_study/runs``),
so they regenerate from the repository alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

from cofi_lightning.tools.report import collect_runs
from cofi_lightning.tools.report.__main__ import main as report_main
from cofi_lightning.tools.report.tables import aggregate

RUNS = Path("runs/sst2_study")
HERE = Path("docs/results/sst2_study")
#: What ``collect`` keeps of a job: the records the report and these tables read.
RECORDS = ("results.json", "DONE.json", "meta.json", "metrics.csv", "config.yaml", "run.json")
#: A job's name: its variant, budget (pruning steps), target and seed.
JOB = re.compile(r"(.+)_b\d+_s[\d.]+_seed\d+")


def _finished(job: Path) -> bool:
    """A job with results, or a teacher-only job whose teacher stage is done."""
    teacher_only = job.name.endswith("teacher") and (job / "teacher" / "DONE.json").is_file()
    return (job / "results.json").is_file() or teacher_only


def collect(runs: Path, records: Path, only: str = "*") -> None:
    """Copy every finished job's records (no checkpoints, models, W&B or Hydra files); ``only``:
    a glob of the jobs' names."""
    for job in sorted(p for p in runs.glob(f"{only}/") if _finished(p)):
        for path in job.rglob("*"):
            parts = path.relative_to(job).parts
            kept = path.name in RECORDS or path.name.startswith("speed_")
            if kept and path.is_file() and not {"wandb", ".hydra"} & set(parts):
                target = records / job.name / path.relative_to(job)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        print(f"collected {job.name}")


def _results(job: Path) -> dict:
    return json.loads((job / "results.json").read_text())


def budgets(records: Path) -> None:
    """Full CoFi's accuracy and stage seconds against the pruning budget."""
    rows = []
    for path in sorted(records.glob("*/results.json")):
        if not path.parent.name.startswith(("full_b", "repro330")):
            continue
        r = json.loads(path.read_text())
        steps = yaml.safe_load((path.parent / "config.yaml").read_text())["pruning"]["max_steps"]
        pruned, teacher = r["pruned"][r["main_metric"]], r["teacher"].get(r["main_metric"])
        share = f"{100 * pruned / teacher:.1f}%" if teacher else "-"
        secs = r["stage_seconds"]
        rows.append(
            (r["target_sparsity"], steps, path.parent.name, r["sparsity"], pruned, share, secs)
        )
    print(
        "| target | prune steps | job | sparsity | accuracy | of teacher | prune s | finetune s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for t, steps, name, s, acc, share, secs in sorted(rows):
        print(
            f"| {t} | {steps} | {name} | {s:.3f} | {acc:.2f} | {share} "
            f"| {secs.get('prune', 0):.0f} | {secs.get('finetune', 0):.0f} |"
        )


def _seconds(results: dict) -> float:
    return sum(v for v in results["stage_seconds"].values() if v and v > 0)


def sparsity_path(records: Path) -> None:
    """The sparsity path (one prune stage, three targets) against three separate runs, seed 57.

    The path's prune stage is shared: its seconds count once; a separate run's teacher stage only
    evaluates the given teacher (the same in both).
    """
    run = _results(records / "path_b1000_seed57")
    main = run["main_metric"]
    print("| target | separate: sparsity | accuracy | path: sparsity | accuracy | difference |")
    print("|---|---|---|---|---|---|")
    separate_seconds = 0.0
    for point in run["operating_points"]:
        t = point["target_sparsity"]
        separate = _results(records / f"full_b1000_s{t:g}_seed57")
        separate_seconds += _seconds(separate)
        a, b = separate["pruned"][main], point["pruned"][main]
        print(
            f"| {t:g} | {separate['sparsity']:.3f} | {a:.2f} | {point['sparsity']:.3f} | {b:.2f} "
            f"| {b - a:+.2f} |"
        )
    total = _seconds(run)
    print(
        f"\nteacher {run['teacher'][main]:.2f}; core-seconds (one thread per job): separate runs "
        f"{separate_seconds:.0f}, path {total:.0f} ({total / separate_seconds:.2f}x)"
    )
    print("path stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in run["stage_seconds"].items()))


def _measured(job: Path) -> dict:
    """The newest ``speed_cpu_fp32*.json`` the bench wrote for ``job`` ({} if none)."""
    speeds = sorted(job.glob("speed_cpu_fp32*.json"))
    return json.loads(speeds[-1].read_text()) if speeds else {}


def latency(records: Path) -> None:
    """Speed-target runs (and the params runs beside them): target, table and measured speedup
    (measured: the newest ``speed_cpu_fp32*.json`` the bench wrote)."""
    print(
        "| job | constraint | target speedup | table speedup | measured speedup | of target | "
        "sparsity | accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for file in sorted(records.glob("*/results.json")):
        r, job = json.loads(file.read_text()), file.parent
        if r.get("constraint") != "latency" and not job.name.startswith(
            ("full_b1000_s0.5", "full_b1000_s0.8")
        ):
            continue
        measured = _measured(job)
        lat = r.get("latency") or {}
        target, got = lat.get("target_speedup"), measured.get("speedup")
        share = f"{100 * got / target:.0f}%" if got and target else "-"
        print(
            f"| {job.name} | {r.get('constraint')} | {target or '-'} | "
            f"{lat.get('table_speedup') or 0:.2f} | {got or 0:.2f} "
            f"({measured.get('threads', '?')} threads) | {share} | {r['sparsity']:.3f} | "
            f"{r['pruned'][r['main_metric']]:.2f} |"
        )


def posttrain(records: Path) -> None:
    """Post-training pruning without a finetune (``posttrain_b0_*``) and with a short one
    (``posttrain_ft<steps>_*``): the constraint's target, what the export reaches (sparsity; the
    table's and the measured speedup, "–" where not benchmarked), accuracy against the teacher and
    the seconds of the prune stage and of all stages (the teacher given)."""
    print(
        "| job | target | finetune steps | sparsity | table speedup | measured speedup | "
        "accuracy | of teacher | prune s | run s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    files = sorted(records.glob("posttrain_b0_*/results.json"))
    files += sorted(records.glob("posttrain_ft*_*/results.json"))
    for file in files:
        r, job = json.loads(file.read_text()), file.parent
        config = yaml.safe_load((job / "config.yaml").read_text())
        steps = config["pruning"]["finetune"]["max_steps"]
        main = r["main_metric"]
        lat = r.get("latency") or {}
        measured = _measured(job).get("speedup")
        target = f"x{lat['target_speedup']:g}" if lat else f"s{r['target_sparsity']:g}"
        accuracy, teacher = r["pruned"][main], r["teacher"][main]
        table = f"{lat['table_speedup']:.2f}" if lat else "–"
        got = f"{measured:.2f}" if measured else "–"
        print(
            f"| {job.name} | {target} | {steps} | {r['sparsity']:.3f} | {table} | {got} | "
            f"{accuracy:.2f} | {100 * accuracy / teacher:.1f}% | "
            f"{r['stage_seconds'].get('prune', 0):.0f} | {_seconds(r):.0f} |"
        )


def compare(records: Path, budget: int, against: str = "full") -> None:
    """Full CoFi, the baseline, the warm starts, the original's choices and the ablations over
    seeds, each against the variant ``against`` at the same target, and against its teacher.

    Runs are labelled by their job's variant (``orig_restart``, which results.json calls plain
    ``full``); jobs of another task than SST-2 start with the task's name (``stsb_full_...``).
    """
    runs = []
    for job in sorted(records.glob(f"*_b{budget}_s*_seed*")):
        found, problems = collect_runs(job)
        if problems:
            sys.exit(f"{job}: {problems[0]}")
        variant = JOB.fullmatch(job.name).group(1)
        runs += [dataclasses.replace(r, ablation=variant.removeprefix(f"{r.task}_")) for r in found]
    groups = aggregate(runs)
    refs = {(g.task, g.target_sparsity): g for g in groups if g.ablation == against}
    print(
        f"{budget} pruning steps; mean ± sample std over seeds; difference to {against} at the "
        "same target with its standard error sqrt(s1²/n1 + s2²/n2); of teacher: the mean of each "
        "run's metric over its own teacher's"
    )
    columns = f"task | variant | target | seeds | sparsity | metric | vs {against} | of teacher"
    print(f"| {columns} | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g in sorted(groups, key=lambda g: _row_order(g, against)):
        diff, ref = "–", refs.get((g.task, g.target_sparsity))
        if g.ablation != against and ref is not None:
            diff = f"{g.pruned.mean - ref.pruned.mean:+.2f}"
            if g.pruned.std is None or ref.pruned.std is None:
                diff += " (1 seed)"
            else:
                se = (g.pruned.std**2 / g.n_seeds + ref.pruned.std**2 / ref.n_seeds) ** 0.5
                diff += f" ± {se:.2f}"
        kept = [100 * r.pruned / r.teacher for r in g.runs if r.teacher]
        of_teacher = f"{sum(kept) / len(kept):.1f}%" if len(kept) == g.n_seeds else "–"
        seeds = ",".join(str(r.seed) for r in sorted(g.runs, key=lambda r: r.seed))
        speed = g.speedup.format(2, unit="×") if g.speedup else "–"
        print(
            f"| {g.task} | {g.ablation} | {g.target_sparsity:g} | {seeds} | "
            f"{g.sparsity.format(1, scale=100)} | {g.pruned.format(2)} | {diff} | {of_teacher} | "
            f"{speed} |"
        )


def _row_order(g, first: str = "full") -> tuple:
    """SST-2 first, then by task, target, the variant ``first`` first, then the others by name."""
    return (g.task != "sst2", g.task, g.target_sparsity, g.ablation != first, g.ablation)


def report(records: Path) -> int:
    """The report of the 1,000-step runs and the teachers. Runs that differ from their variant by
    one option only (``orig_*``, ``lead25_*``, ``reglr*``) would be duplicates there: see
    ``compare``."""
    dirs = sorted(records.glob("*teacher")) + [
        d
        for d in sorted(records.glob("*_b1000_*"))
        if not d.name.startswith(("orig_", "lead25_", "reglr"))
    ]
    return report_main([*map(str, dirs), f"out={records.parent}"])


def bert_base(out: Path, shared: Path) -> None:
    """A BERT-base-shaped classifier with random weights and MiniLM's tokenizer (only its speed
    matters: the 10x latency-target job)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(num_labels=2)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(shared / "models" / "all-MiniLM-L6-v2" / name, out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=HERE / "runs", help="collected records")
    sub = parser.add_subparsers(dest="command", required=True)
    tables = {
        "budgets": budgets,
        "path": sparsity_path,
        "latency": latency,
        "posttrain": posttrain,
    }
    for name, table in tables.items():
        sub.add_parser(name, help=table.__doc__.split("\n")[0])
    gather = sub.add_parser("collect", help=collect.__doc__.split(";")[0])
    gather.add_argument("--runs", type=Path, default=RUNS, help="the jobs' directories")
    gather.add_argument("--only", default="*", help="a glob of the job names to collect")
    comparison = sub.add_parser("compare", help="variants against one of them, over seeds")
    comparison.add_argument(
        "--budget", type=int, default=1000, help="pruning steps of the jobs compared"
    )
    comparison.add_argument(
        "--against", default="full", help="the variant the others are compared with: full, uniform…"
    )
    sub.add_parser("report", help="report.md, plots and curves beside --records")
    model = sub.add_parser("bert-base", help="write a random BERT-base classifier")
    model.add_argument("out", type=Path, help="the model directory to write")
    model.add_argument("--shared", type=Path, default=Path("../shared"), help="MiniLM's folder")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.runs, args.records, args.only)
    elif args.command == "compare":
        compare(args.records, args.budget, args.against)
    elif args.command == "report":
        return report(args.records)
    elif args.command == "bert-base":
        bert_base(args.out, args.shared)
    else:
        tables[args.command](args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
