#!/usr/bin/env bash
# GPU acceptance checks of the "cupy" backend (issue 4). Run on a machine with an NVIDIA GPU,
# PyTorch with CUDA and CuPy (cupy-cuda12x or cupy-cuda13x), from anywhere:
#
#   bash benchmarks/gpu/run_gpu_checks.sh                 # all steps
#   bash benchmarks/gpu/run_gpu_checks.sh pytest sanitizer # some steps (env pytest sanitizer modes bench)
#
# Logs go to benchmarks/results/gpu-<UTC date>-<GPU name>/ (override with OUTDIR=...), one per step,
# plus summary.txt. The package is used from the source tree (PYTHONPATH), no install needed.
# Exit status: 0 when every step that ran passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
OUTDIR=${OUTDIR:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)-${gpu:-unknown}}
mkdir -p "$OUTDIR"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env pytest sanitizer modes bench)
status=0

run_step() {  # name, command...
    local name=$1; shift
    echo "== $name: $*"
    local t0=$(date +%s)
    "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    echo "$name: rc=$rc ($(( $(date +%s) - t0 )) s) $*" | tee -a "$OUTDIR/summary.txt"
    tail -n 5 "$OUTDIR/$name.log"
    [ $rc -eq 0 ] || status=1
}

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null \
            || ls /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)

for step in "${steps[@]}"; do
    case $step in
    env)
        run_step env bash -c "nvidia-smi; $PY -c 'import torch, cupy; print(\"torch\", torch.__version__, torch.version.cuda, torch.cuda.get_device_name()); print(\"cupy\", cupy.__version__)'; git rev-parse HEAD 2>/dev/null; $PY -m snntorch_egru.cuda"
        ;;
    pytest)
        run_step pytest "$PY" -m pytest tests/test_kernels_compile.py tests/test_cupy_backend.py -v -rs -p no:cacheprovider
        ;;
    sanitizer)
        if [ -z "$sanitizer" ]; then
            echo "sanitizer: SKIPPED, compute-sanitizer not found (CUDA toolkit or the nvidia-cuda-sanitizer-api wheel)" \
                | tee -a "$OUTDIR/summary.txt"; status=1
        else
            for tool in memcheck racecheck synccheck; do
                run_step "sanitizer-$tool" timeout 900 "$sanitizer" --tool "$tool" --error-exitcode 3 \
                    "$PY" benchmarks/gpu/sanitizer_case.py
            done
        fi
        ;;
    modes)
        run_step modes "$PY" benchmarks/gpu/launch_modes.py --out "$OUTDIR/launch_modes.md"
        ;;
    bench)
        # shellcheck disable=SC2086
        run_step bench "$PY" -m snntorch_egru bench --device cuda --memory --out "$OUTDIR" ${BENCH_ARGS:-}
        ;;
    *)
        echo "unknown step $step (env pytest sanitizer modes bench)"; status=1 ;;
    esac
done
echo "logs in $OUTDIR; overall status $status"
exit $status
