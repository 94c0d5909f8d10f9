#!/usr/bin/env bash
# Every GPU check and timing of the project in one call, for a lent GPU machine that already has
# torch, triton, transformers and einops (run from the repository root, project from source):
#
#   bash benchmarks/device_check.sh            # logs under $OUT (or ./device-logs)
#
# The anchors it lacks travel as wheels in .whl/ (kornia, vector-quantize-pytorch and their
# pure-Python needs; see docs/benchmarks.md for the download command). Correctness first: the
# fused pyramid kernels and the fused VQ search, compiled, against the torch path and float64
# brute force; then the timed suites, each under its own time limit so that one hang cannot
# eat the others. The last lines printed are a summary of what passed.
set -u -o pipefail
out="${OUT:-device-logs}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv \
    | tee "$out/gpu.txt"
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, \
'triton', triton.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"

summary=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit ${limit}s)"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=$?
    summary+=("$name: exit $rc, $((SECONDS - start)) s")
}

step kernel-tests 150 env PYRTOK_KERNEL_TESTS=cuda python3 -m pytest -q -p no:cacheprovider \
    -m "not slow" tests/triton "tests/quantize/test_triton_interpret.py::test_triton_kernel_matches_brute_force[cuda]"
step pyramid-speed 210 python3 benchmarks/pyramid_speed.py --device cuda --sweep
step vq-speed 120 python3 benchmarks/vq_speed.py --device cuda --n 65536 --repeats 3

echo "=== summary"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
