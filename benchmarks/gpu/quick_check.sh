#!/usr/bin/env bash
# GPU acceptance of the "cupy" backend in at most 8 minutes on one H100/H200-class GPU, for a
# machine with torch and CuPy but no CUDA toolkit and no package registry. From anywhere:
#
#   bash benchmarks/gpu/quick_check.sh            # all steps
#   bash benchmarks/gpu/quick_check.sh diag timing # some steps: diag pytest memcheck synccheck resources timing phases
#
# Pure-Python dependencies the GPU image lacks (snntorch, nir, nirtorch, norse) come as wheels in
# .whl/ (made by /work/shared/gpu/prepare-wheels.sh); they are unpacked into .site/ without a
# registry. The project is imported from the working tree (PYTHONPATH), never installed.
# Every step has its own time limit and the whole run a deadline (QUICK_CHECK_BUDGET_S, default
# 450 s); a failing or timed-out step is recorded and the next one runs. Logs, summary.md and the
# timing table go to benchmarks/results/gpu-<UTC date>-<GPU>/ (override with OUTDIR=...).
# Exit status: 0 when every step that ran passed. The long, complete run is run_gpu_checks.sh.
# DRY_RUN=1 (a CPU machine): the same steps, with the timing script's --dry-run (tiny, CPU) and
# OUTDIR defaulting to a tmp dir; the GPU steps then fail or skip, which checks the script itself.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
t_begin=$(date +%s)
BUDGET=${QUICK_CHECK_BUDGET_S:-450}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ ! -d .site ]; then
    "$PY" -m pip install -q --no-index --no-deps --target .site .whl/*.whl || echo "quick_check: unpacking .whl/ failed"
fi
export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
gpu=${gpu%-}
DRY=${DRY_RUN:-0}
if [ "$DRY" = 1 ]; then
    OUTDIR=${OUTDIR:-$(mktemp -d)/gpu-dry-run}
    dry=(--dry-run)
else
    OUTDIR=${OUTDIR:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)-${gpu:-unknown}}
    dry=()
fi
mkdir -p "$OUTDIR"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(diag pytest memcheck synccheck resources timing phases)
status=0
{
    echo "# quick_check $(date -u +%FT%TZ) on ${gpu:-unknown GPU}"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), budget ${BUDGET} s"
    echo
    echo "| step | status | seconds | log |"
    echo "|---|---|---|---|"
} >"$OUTDIR/summary.md"

run_step() {  # name, limit seconds, command...
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - t_begin) ))
    if [ "$left" -lt 15 ]; then
        echo "| $name | skipped (deadline) | 0 | - |" >>"$OUTDIR/summary.md"
        echo "== $name: skipped, the ${BUDGET} s deadline is reached"
        status=1
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit} s): $*"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    local what="ok"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then what="TIMEOUT (${limit} s)"; elif [ $rc -ne 0 ]; then what="FAILED (rc $rc)"; fi
    [ $rc -eq 0 ] || status=1
    echo "| $name | $what | $dt | $name.log |" >>"$OUTDIR/summary.md"
    echo "$name: $what in $dt s"
    tail -n 4 "$OUTDIR/$name.log"
}

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null \
            || ls /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1 \
            || "$PY" -c "import glob, site, sys; c = [p for d in site.getsitepackages() + sys.path for p in glob.glob(d + '/nvidia/cuda_sanitizer_api/compute-sanitizer/compute-sanitizer')]; print(c[0] if c else '')" 2>/dev/null)

for step in "${steps[@]}"; do
    case $step in
    diag)  # environment, then the package's own diagnosis (compile check, float64 self-test on the GPU)
        run_step diag 90 bash -c "nvidia-smi; $PY -c 'import torch, cupy; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, torch.cuda.get_device_name()); print(\"cupy\", cupy.__version__)'; git rev-parse HEAD 2>/dev/null; $PY -m snntorch_egru.cuda"
        ;;
    pytest)  # trimmed CUDA tests: float64 equality per launch mode, float32, half storage, module layers
        run_step pytest 150 "$PY" -m pytest tests/test_cupy_backend.py -q -rs -p no:cacheprovider -x \
            -k "gpu_float64_each_launch_mode or gpu_float32 or gpu_half_storage or gpu_egru_module_layers or gpu_launch_modes_identical or gpu_runs_on_current"
        ;;
    memcheck|synccheck)  # only the EGRU kernels instrumented, tiny case
        if [ -z "$sanitizer" ]; then
            echo "| $step | skipped (no compute-sanitizer) | 0 | - |" >>"$OUTDIR/summary.md"
            echo "== $step: skipped, compute-sanitizer not found"
        else
            run_step "$step" 60 "$sanitizer" --tool "$step" --kernel-name regex:egru_ --error-exitcode 3 \
                "$PY" benchmarks/gpu/sanitizer_case.py --hidden 300 --steps 3
        fi
        ;;
    resources)  # registers and co-resident blocks per compiled variant (non-rdc build)
        run_step resources 60 "$PY" -c "
import torch
from snntorch_egru.cuda import _cupy
from snntorch_egru.cuda._sources import VARIANTS
sms = torch.cuda.get_device_properties(0).multi_processor_count
print('| kernel | real | wstore | units | registers | co-resident blocks |'); print('|---|---|---|---|---|---|')
for real, w, u in VARIANTS:
    for name in ('egru_forward', 'egru_backward'):
        k = _cupy.get_kernel(name, real, w, u)
        print(f'| {name} | {real} | {w} | {u} | {k.num_regs} | {_cupy.CupyLauncher._coresident(k, sms)} |')
"
        ;;
    timing)  # B = 1, 16, 128 at H = 1024, 10 % activity: vs cuDNN (TF32 on/off) and the per-step loop
        run_step timing 200 "$PY" benchmarks/gpu/quick_timing.py --hidden 1024 --batches 1 16 128 --steps 200 \
            --activity 0.1 --budget-s 140 --out "$OUTDIR/timing.md" "${dry[@]}"
        ;;
    phases)  # per-phase kernel times (CUDA events) per launch mode at H = 1024, B = 1 and 16: the
             # figures the performance model of docs/guide/sparse_bptt.md predicts
        run_step phases 90 bash -c "{ $PY benchmarks/gpu/phase_times.py --hidden 1024 --batch 1 --steps 100 ${dry[*]} && echo && $PY benchmarks/gpu/phase_times.py --hidden 1024 --batch 16 --steps 50 ${dry[*]}; } >$OUTDIR/phases.md"
        ;;
    *)
        echo "unknown step $step (diag pytest memcheck synccheck resources timing phases)"; status=1 ;;
    esac
done
for f in resources timing phases; do
    if [ -s "$OUTDIR/$f.md" ]; then
        { echo; echo "## $f"; echo; cat "$OUTDIR/$f.md"; } >>"$OUTDIR/summary.md"
    elif [ "$f" = resources ] && grep -q '^|' "$OUTDIR/$f.log" 2>/dev/null; then
        { echo; echo "## $f"; echo; grep '^|' "$OUTDIR/$f.log"; } >>"$OUTDIR/summary.md"
    fi
done
echo >>"$OUTDIR/summary.md"
echo "total $(( $(date +%s) - t_begin )) s, overall status $status" >>"$OUTDIR/summary.md"
cat "$OUTDIR/summary.md"
echo "logs in $OUTDIR"
exit $status
