#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run: a lent GPU machine's time is short.
#
#   bash scripts/gpu_check.sh            # writes its logs to $OUT (or test-artifacts/gpu)
#
# It uses the python3 found on PATH as it is (a GPU machine's own torch, with pytest and
# transformers beside it), imports tinytf from this checkout, and needs no Streamlit:
#   1. the core test files, the GPU-marked tests among them (bf16 autocast against the
#      by-hand attention, training with the fused AdamW, cached generation, checkpoints);
#   2. a CLI training run of the `small` preset on CUDA with --compile, whose log shows
#      tokens/s and MFU (or the warning that compiling fell back);
#   3. the benchmarks that run on a GPU (training against GPT-2, generation), written to
#      their own CUDA sections of docs/benchmarks.md, which is copied to the output folder.
# Each step runs even when an earlier one failed; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

out="${OUT:-test-artifacts/gpu}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

step() {
    local name="$1"
    shift
    echo "=== $name: $*"
    local started=$SECONDS
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - started)) s"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$rc
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' \
    | tee -a "$out/gpu.txt"

step tests "$python" -m pytest -q -p no:cacheprovider -rs \
    tests/test_gpu.py tests/test_attention_autocast.py tests/test_model.py \
    tests/test_sampling.py tests/test_training.py tests/test_checkpoint.py
step train_compile "$python" -m tinytf train --corpus pydoc --level char --preset small \
    --steps 500 --device cuda --compile --runs-dir "$out/runs"
# 200 steps a round: 30 (the CPU default) take a GPU a few milliseconds, launch overhead.
step bench_train "$python" -m bench.bench_train_peer --device cuda --steps 200
step bench_generation "$python" -m bench.bench_generation --device cuda
cp docs/benchmarks.md "$out/benchmarks.md"
rm -rf "$out/runs"  # the run folder's checkpoints are not worth carrying back
exit "$status"
