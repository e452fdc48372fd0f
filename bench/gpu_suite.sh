#!/usr/bin/env bash
# The whole GPU suite in one command, on a machine with a CUDA GPU (e.g. a lent H100):
#     bench/gpu_suite.sh OUT_DIR
# builds what is missing, runs the GPU tests, every benchmark family on CUDA and the sm_90 compile
# report, and writes the logs, the results CSV and the plots into OUT_DIR. Commit OUT_DIR's CSV rows
# into bench/results/<device>.csv afterwards (cat them onto it without the header).
set -euo pipefail
out=${1:?usage: bench/gpu_suite.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
# A CUDA torch ships its own triton; only fastmask (its C++ extension) and the test tools may be missing.
"$python" -c "import fastmask._C, transformers, pytest" 2>/dev/null || "$python" -m pip install -e ".[test]"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

status=0
FASTMASK_REQUIRE_CPP=1 "$python" -m pytest tests -q -x -p no:cacheprovider 2>&1 | tee "$out/tests.log" || status=1
"$python" -m fastmask.triton.hopper 2>&1 | tee "$out/hopper.txt" || status=1
"$python" -m fastmask.bench --device cuda --csv "$out/results.csv" --plots "$out/plots" 2>&1 | tee "$out/bench.log" || status=1
exit $status
