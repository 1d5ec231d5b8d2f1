#!/usr/bin/env bash
# The SST-2 / MiniLM-L6 study, one job at a time, resumable, from the repository root:
#   bash docs/results/sst2_study/jobs.sh list            # the jobs and whether they finished
#   bash docs/results/sst2_study/jobs.sh run <job>...    # run (or resume) jobs, one core each
#   bash docs/results/sst2_study/jobs.sh collect         # copy finished jobs' records here
#   bash docs/results/sst2_study/jobs.sh budgets         # full CoFi against budget (markdown)
# Runs live in runs/sst2_study/<job>; `collect` keeps what the report needs (results.json, the
# stages' DONE.json, CSV logs, config) under docs/results/sst2_study/runs/<job>/, so the report
# regenerates from the repository alone:
#   python -m cofi_lightning.report docs/results/sst2_study/runs out=docs/results/sst2_study
set -euo pipefail
ROOT=runs/sst2_study
TEACHER=${TEACHER:-$ROOT/teacher/teacher/model}
HERE=docs/results/sst2_study

# budget b: pruning steps, distillation-only 5%, ramp a third, finetune a third, evaluations ~20
budget() {
  local b=$1
  echo "pruning.max_steps=$b pruning.pre_pruning_steps=$((b / 20))" \
    "pruning.lagrangian_warmup_steps=$((b / 3)) pruning.finetune.max_steps=$((b / 3))" \
    "pruning.eval_every_steps=$((b / 20)) pruning.finetune.eval_every_steps=$((b / 20))"
}

declare -A JOBS
JOBS[teacher]="'stages=[teacher]'"
# the first CPU reproduction's schedule (experiment=repro_sst2_cpu: 330 steps, reg_lr 0.03), for
# the whole-job time before / after the teacher cache and the skipped closed units
JOBS[repro330_s0.6_seed57]="experiment=repro_sst2_cpu distill.teacher=$TEACHER \
pruning.target_sparsity=0.6"
JOBS[repro330_live_s0.6_seed57]="experiment=repro_sst2_cpu distill.teacher=$TEACHER \
pruning.target_sparsity=0.6 distill.teacher_cache=false"
for b in 330 1000 3000; do
  for t in 0.6 0.9; do
    JOBS[full_b${b}_s${t}_seed57]="distill.teacher=$TEACHER pruning.target_sparsity=$t $(budget $b)"
  done
done
for seed in 57 58 59; do
  for t in 0.6 0.9; do
    base="distill.teacher=$TEACHER pruning.target_sparsity=$t seed=$seed $(budget 1000)"
    JOBS[full_b1000_s${t}_seed${seed}]="$base"
    JOBS[original_b1000_s${t}_seed${seed}]="$base fidelity=original"
    # the baseline: uniform width at the target, CoFi's whole budget (prune + finetune) as finetune
    JOBS[uniform_b1000_s${t}_seed${seed}]="distill.teacher=$TEACHER pruning.target_sparsity=$t \
seed=$seed pruning.method=uniform pruning.finetune.max_steps=1333 pruning.finetune.eval_every_steps=50"
  done
  for a in no_hidden_mask no_layer_masks fixed_layer_map no_distill; do
    JOBS[${a}_b1000_s0.9_seed${seed}]="distill.teacher=$TEACHER pruning.target_sparsity=0.9 \
seed=$seed ablation=$a $(budget 1000)"
  done
done
for a in no_hidden_mask no_layer_masks fixed_layer_map no_distill; do
  JOBS[${a}_b1000_s0.6_seed57]="distill.teacher=$TEACHER pruning.target_sparsity=0.6 ablation=$a \
$(budget 1000)"
done

case "${1:-list}" in
  list)
    for job in $(printf '%s\n' "${!JOBS[@]}" | sort); do
      state=todo
      [[ -f $ROOT/$job/results.json || -f $ROOT/$job/teacher/DONE.json ]] && state=done
      [[ -d $HERE/runs/$job ]] && state=collected
      echo "$state $job"
    done
    ;;
  run)
    shift
    for job in "$@"; do
      [[ -n ${JOBS[$job]:-} ]] || { echo "unknown job $job" >&2; exit 2; }
      args=${JOBS[$job]}
      [[ $args == experiment=* ]] || args="experiment=study_sst2_cpu $args"
      eval "OMP_NUM_THREADS=\${THREADS:-1} python train.py run_dir=$ROOT/$job \
        trainer.enable_progress_bar=false $args"
    done
    ;;
  collect)
    for dir in "$ROOT"/*/; do
      job=$(basename "$dir")
      [[ -f $dir/results.json || ( $job == teacher && -f $dir/teacher/DONE.json ) ]] || continue
      out=$HERE/runs/$job
      mkdir -p "$out"
      (cd "$dir" && find . \( -name results.json -o -name DONE.json -o -name meta.json \
        -o -name metrics.csv -o -name config.yaml -o -name run.json -o -name 'speed_*.json' \) \
        -not -path './wandb/*' -not -path './.hydra/*' -print0 | xargs -0 -I{} cp --parents {} "$OLDPWD/$out/")
      echo "collected $job"
    done
    ;;
  budgets)
    python - "$HERE/runs" <<'PY'
import json, sys
from pathlib import Path
rows = []
for path in sorted(Path(sys.argv[1]).glob("*/results.json")):
    name = path.parent.name
    if not (name.startswith("full_b") or name.startswith("repro330")):
        continue
    r = json.loads(path.read_text())
    main = r["main_metric"]
    cfg = (path.parent / "config.yaml").read_text()
    steps = next(int(l.split(":")[1]) for l in cfg.splitlines() if l.startswith("  max_steps:"))
    pruned, teacher = r["pruned"][main], r["teacher"].get(main)
    share = f"{100 * pruned / teacher:.1f}%" if teacher else "-"
    secs = r["stage_seconds"]
    rows.append((r["target_sparsity"], steps, name, r["sparsity"], pruned, share, secs))
print("| target | prune steps | job | sparsity | accuracy | of teacher | prune s | finetune s |")
print("|---|---|---|---|---|---|---|---|")
for t, steps, name, s, acc, share, secs in sorted(rows):
    print(f"| {t} | {steps} | {name} | {s:.3f} | {acc:.2f} | {share} | {secs.get('prune', 0):.0f} "
          f"| {secs.get('finetune', 0):.0f} |")
PY
    ;;
  *) echo "usage: $0 list | run <job>... | collect | budgets" >&2; exit 2 ;;
esac
