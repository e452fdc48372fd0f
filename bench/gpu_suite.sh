#!/usr/bin/env bash
# The whole GPU suite in one command, on a machine with a CUDA GPU (e.g. a lent H100/H200):
#     bench/gpu_suite.sh OUT_DIR
# builds the C++ extension if missing (offline: no pip), runs the tests on the GPU, the sm_90 report
# and every benchmark family on CUDA, and writes logs, the results CSV and the plots into OUT_DIR.
# Commit OUT_DIR/results.csv's rows into bench/results/<device>.csv afterwards (without the header).
# TEST_TIMEOUT and BENCH_TIMEOUT (seconds) bound the two long steps (defaults 200 + 180: with the hopper
# report the suite fits 8 minutes of device time, what one lent window allows); NO_PLOTS=1 skips the plots;
# ONLY=FAMILY benchmarks one family; NO_TESTS=1 skips the tests; EXTRA_PYTHONPATH adds packages
# carried to a machine without a registry (peers' wheels unpacked, the tokenizer files).
set -uo pipefail
out=${1:?usage: bench/gpu_suite.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}" PYTHONUNBUFFERED=1

"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
"$python" -c "import fastmask._C" 2>/dev/null || "$python" setup.py -q build_ext --inplace > "$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.txt" 2>&1 || true

status=0
if [ -z "${NO_TESTS:-}" ]; then
    FASTMASK_REQUIRE_CPP=1 timeout "${TEST_TIMEOUT:-200}" "$python" -m pytest tests -q -p no:cacheprovider -p no:warnings \
        --timeout 300 2>&1 | tee "$out/tests.log" | tail -15 || status=1
fi
timeout 90 "$python" -m fastmask.triton.hopper > "$out/hopper.txt" 2>&1 || status=1
plots=(--plots "$out/plots")
[ -n "${NO_PLOTS:-}" ] && plots=(--no-plots)  # e.g. where only a few files may come back
# Every family, train_step included (bert-base, L 512, B 16, bf16: HF stock vs apply_fastmask vs
# DeviceMasker + torch.compile); ONLY=train_step runs one family (e.g. on a short device lease).
timeout "${BENCH_TIMEOUT:-180}" "$python" -m fastmask.bench --device cuda ${ONLY:+--only "$ONLY"} --csv "$out/results.csv" \
    "${plots[@]}" > "$out/bench.log" 2>&1 || status=1
tail -60 "$out/bench.log"
exit $status
