#!/usr/bin/env bash
# GPU checks in one call, on any machine with a CUDA GPU (under 8 minutes):
#   1. the GPU-marked tests (pytest -m gpu): training steps and extracted features on CUDA equal
#      the CPU results within the tolerances in tests/gpu/test_gpu_parity.py, a short study-model
#      training and a U-Net epoch on CUDA;
#   2. a short training-throughput benchmark (tests/gpu/bench_train.py).
# Results go to $OUT (a new temporary folder when unset): nvidia-smi.txt, gpu-tests.log,
# gpu-tests.xml (JUnit), bench.json, bench.log. Exit status: non-zero when a test failed, none
# ran (no CUDA: they would all be skipped), or the benchmark failed.
#
#   tests/gpu/run.sh                       # from anywhere; PYTHON=... to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$(mktemp -d -t hccrad-gpu-XXXXXX)}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
export PYTHONPATH="$PWD/workflow/lib${PYTHONPATH:+:$PYTHONPATH}"
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS (before CUDA initialises)
echo "results in $OUT"

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >>"$OUT/nvidia-smi.txt"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))" \
        | tee "$OUT/gpu-tests.log"
    exit 2
fi

# -m gpu replaces pyproject's "not gpu" selection; -rs lists skips (there should be none)
timeout 300 "$PYTHON" -m pytest -m gpu -rs -q -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" \
    tests/gpu tests/test_deep_segmentation.py tests/test_deep_train.py 2>&1 | tee "$OUT/gpu-tests.log"
tests=${PIPESTATUS[0]}
if grep -qE "[0-9]+ skipped" "$OUT/gpu-tests.log"; then
    echo "GPU tests were skipped" | tee -a "$OUT/gpu-tests.log"
    tests=1
fi

timeout 150 "$PYTHON" tests/gpu/bench_train.py --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}

echo "gpu tests: exit $tests; benchmark: exit $bench; results in $OUT"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
