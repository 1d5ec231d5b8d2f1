"""How well the Lagrangian keeps the expected sparsity ŝ on the target ramp: masks and multipliers
alone, without the network.

The masks of a model config (MiniLM-L6 by default) and the two multipliers are trained as in the
prune stage (one AdamW, ``reg_lr`` for both, ascent on the multipliers, log-alpha clamp), with a
stand-in for the task loss: every unit resists pruning with a fixed random importance w
(``pressure · Σ w · (1 − z)`` on sampled masks). For each setting it reports the largest lag
behind the ramp, the largest overshoot after mid-ramp, the largest |ŝ − t| from the end of the
ramp to the end, and how many steps after the ramp ŝ needs to stay within 0.02 of t::

    python scripts/sparsity_control.py [--model DIR] [--pressure 0.02] [--out FILE]

``--runs DIR...`` reports the same numbers for finished prune stages of real runs (their CSV logs,
``--pre`` and ``--ramp`` giving the schedule) and plots ŝ against t for them (``--plot FILE``)::

    python scripts/sparsity_control.py --runs RUN... --pre 20 --ramp 150 --plot curves.png
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
from transformers import AutoConfig

from cofi_lightning.core.lagrangian import (
    LagrangeMultipliers,
    TargetPath,
    multiplier_param_group,
)
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertConfig

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared/models/all-MiniLM-L6-v2"


def simulate(config, *, target, pre, ramp, steps, reg_lr, reset, pressure, seed=0) -> dict:
    masks, multipliers = CoFiMasks(config), LagrangeMultipliers()
    optimizer = torch.optim.AdamW(
        [
            {"params": masks.mask_parameters(), "lr": reg_lr, "weight_decay": 0.0},
            multiplier_param_group(multipliers, reg_lr),
        ]
    )
    g = torch.Generator().manual_seed(seed)
    importance = {
        u: torch.rand(gate.log_alpha.shape, generator=g) ** 3 for u, gate in masks.gates.items()
    }
    trace, path = [], TargetPath((target,), (ramp,))
    for step in range(pre, steps):
        t = path(step - pre)
        z = masks.sample(masks.noise(g))
        task = sum((importance[u] * (1 - v)).sum() for u, v in z.items()) * pressure
        s_hat = masks.expected_sparsity()
        if reset:
            multipliers.reset_windup_(float(s_hat.detach()) - t, optimizer)
        (task + multipliers(s_hat, t)).backward()
        optimizer.step()
        optimizer.zero_grad()
        masks.clamp_()
        trace.append((step, t, float(s_hat.detach())))
    return _tracking(trace, pre, ramp)


def _tracking(trace: list[tuple[int, float, float]], pre: int, ramp: int) -> dict:
    """The control numbers of ``[(step, t, ŝ)]`` for a ramp over steps ``pre .. pre + ramp``."""
    end = pre + ramp
    after = [(step, abs(s - t)) for step, t, s in trace if step >= end]
    late = [step for step, gap in after if gap > 0.02]
    return {
        "lag": max(t - s for step, t, s in trace if pre <= step < end),
        "overshoot": max(s - t for step, t, s in trace if step >= pre + ramp // 2),
        "max_gap_after_ramp": max(gap for _, gap in after),
        "settle_steps": (late[-1] + 1 - end) if late else 0,
        "final_gap": after[-1][1],
    }


def _real_runs(args) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cofi_lightning.tools.report.curves import read_prune_curve

    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rows = []
    for run in args.runs:
        # every attempt of a resumed stage, the later one winning for replayed steps
        curve = read_prune_curve(Path(run), "accuracy")
        if curve is None or not curve.target:
            raise SystemExit(f"{run}: no prune-stage CSV log with the target (logger=csv)")
        expected = dict(curve.expected)
        trace = [(step, t, expected[step]) for step, t in curve.target if step in expected]
        best = json.loads((Path(run) / "prune" / "best" / "meta.json").read_text())
        result = {k: round(v, 3) for k, v in _tracking(trace, args.pre, args.ramp).items()}
        rows.append({"run": Path(run).name, **result, "selected": best})
        print(json.dumps(rows[-1]))  # noqa: T201  (a CLI script's output)
        ax.plot([s for s, _, _ in trace], [100 * v for _, _, v in trace], label=Path(run).name)
    ax.plot([s for s, _, _ in trace], [100 * t for _, t, _ in trace], "k--", label="target t")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("expected sparsity ŝ (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if args.plot:
        fig.savefig(args.plot, dpi=100)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--pressure", type=float, default=0.02)
    parser.add_argument("--out", default=None)
    parser.add_argument("--runs", nargs="*", default=None, help="run dirs with a prune stage")
    parser.add_argument("--pre", type=int, default=0, help="with --runs: pre-pruning steps")
    parser.add_argument("--ramp", type=int, default=0, help="with --runs: ramp steps")
    parser.add_argument("--plot", default=None, help="with --runs: write the curves here")
    args = parser.parse_args()
    if args.runs:
        _real_runs(args)
        return
    torch.set_num_threads(1)
    config = CoFiBertConfig.from_bert_config(AutoConfig.from_pretrained(args.model), num_labels=2)
    rows = []
    schedules = [(30, 170, 330), (50, 333, 1000), (100, 1000, 2000)]
    for (pre, ramp, steps), target, reg_lr, reset in itertools.product(
        schedules, (0.6, 0.9), (0.03, 0.1, 0.2), (False, True)
    ):
        result = simulate(
            config,
            target=target,
            pre=pre,
            ramp=ramp,
            steps=steps,
            reg_lr=reg_lr,
            reset=reset,
            pressure=args.pressure,
        )
        row = {"ramp": ramp, "steps": steps, "target": target, "reg_lr": reg_lr, "reset": reset}
        rows.append({**row, **{k: round(v, 3) for k, v in result.items()}})
        print(json.dumps(rows[-1]), flush=True)  # noqa: T201  (a CLI script's output)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
