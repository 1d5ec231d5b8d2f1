#!/usr/bin/env bash
# GPU readiness check, one call on a CUDA machine (< 10 minutes on one H100/H200-class GPU):
#   1. the gpu-marked tests (masked bf16 training step, exported-model bf16 inference, CUDA-event
#      timing of the benchmark);
#   2. a short `trainer=gpu` (bf16-mixed) run of the whole pipeline on the demo experiment;
#   3. speed of the uniform compact model vs vanilla transformers BERT and of BERT-base at 95%
#      sparsity vs dense, fp32 and bf16, batch 128 x 128 (CUDA events, median of 50 rounds);
#   4. a latency table of the MiniLM-L6 shape (bf16, batch 128 x 128).
# Results land in ${OUT:-bench/results/gpu}: gpu_tests.log, demo.log (+ its results.json),
# speed_fp32.json / speed_bf16.json and summary.txt. Usage: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} WANDB_MODE=${WANDB_MODE:-offline}
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)" | tee "$OUT/summary.txt"

echo "== gpu tests" | tee -a "$OUT/summary.txt"
python -m pytest -q -m gpu tests/gpu 2>&1 | tee "$OUT/gpu_tests.log" | tail -1 | tee -a "$OUT/summary.txt"

echo "== trainer=gpu demo (short)" | tee -a "$OUT/summary.txt"
rm -rf "$OUT/demo"  # a fresh run each check
start=$(date +%s)
python train.py experiment=demo trainer=gpu logger=csv run_dir="$OUT/demo" \
    distill.teacher_training.epochs=1 pruning.epochs=1 pruning.finetune.epochs=1 \
    > "$OUT/demo.log" 2>&1 || { tail -30 "$OUT/demo.log"; exit 1; }
echo "demo: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
python -c "import json,sys; r=json.load(open(sys.argv[1])); print('teacher', r['teacher'], 'pruned', r['pruned'], 'sparsity', round(r['sparsity'], 4))" \
    "$OUT/demo/results.json" | tee -a "$OUT/summary.txt"

for dtype in fp32 bf16; do
    echo "== speed $dtype, batch 128 x 128" | tee -a "$OUT/summary.txt"
    python scripts/pruned_speed.py --device cuda --dtype "$dtype" --batch 128 --seq 128 \
        --warmup 10 --rounds 50 --out "$OUT/speed_$dtype.json" 2>&1 | tee -a "$OUT/summary.txt"
done

echo "== latency table (MiniLM-L6 shape, bf16, batch 128 x 128) and its accuracy" | tee -a "$OUT/summary.txt"
MODEL=${COFI_SHARED_DIR:-../shared}/models/all-MiniLM-L6-v2
python -m cofi_lightning.latency profile --model "$MODEL" --device cuda --dtype bf16 --batch 128 \
    --seq 128 --rounds 20 --out "$OUT/latency_minilm_bf16.json" 2>&1 | tail -1 | tee -a "$OUT/summary.txt"
