#!/usr/bin/env bash
# One prepared GPU run on Keras' JAX backend, for a GPU machine without internet, TensorFlow or
# Keras, laid out as ../shared/gpu/README.md describes. From the project root:
#
#   python benchmarks/gpu_bundle.py pack ../shared WHEELS .device   # here, once (< 64 MiB)
#   benchmarks/gpu_run.sh [--smoke] [--bundle .device | --shared ../shared] [--out DIR]
#                         [--dataset fer2013|ferplus|both] [--budget SECONDS]
#                         [--preset-limit SECONDS] [--bench-limit SECONDS]
#                         [--levers-limit SECONDS] [--levers "VARIANT ..."]
#                         [--only preset|levers|bench] [--with-levers] [--with-bench]
#                         [--xla-autotune LEVEL]
#
# Steps, in order: `skfer reproduce --preset gpu` on FER2013, then on FER+'s labels
# (--dataset both, the default; the bundle carries fer2013new.csv); then, with --with-levers or
# --only levers, benchmarks/bench_levers.py: the preset's face model on FER2013 with each
# accuracy lever on and off (--levers picks the variants, default "baseline smoothing mixup";
# every variant is also scored with 5 test-time crops), scored on the stopping part, PublicTest
# reported; then, with --with-bench or --only bench, the fit ratio of TransferCNNClassifier to
# a hand-written Keras model of the same graph at batch 64 and 256. --only runs that step
# alone. It writes into --out (default: $OUT, else runs/gpu): run.log (device, every step's
# output, wall times), per dataset the preset's table, JSON and figures (fer2013/, ferplus/),
# and levers.json.
#
# Time: the whole call stops within --budget seconds (default 570, as one device call may last
# at most 600 s; 1500 with --smoke), each step under `timeout` with what is left of it, or less
# with --preset-limit (each reproduce step), --levers-limit and --bench-limit; a step that
# would get under 30 s is skipped. A stopped step leaves its log lines but no table. The FER2013
# preset alone took 426 s with unpacking on an H100 (2026-11-27), so FER+ needs a larger budget
# or a call of its own (--dataset ferplus) to finish. The levers step gets its limit, less 10 s,
# as bench_levers.py's --time-limit: it stops training in time to score the model and print its
# table, and names the variants it had no time for (the preset's face model fit in 2.5 min on
# an H100: expect about that per variant, so two or three per call; pass the rest to --levers
# in another call).
#
# --smoke runs the same steps with `reproduce --smoke` (tiny data, small inputs, one epoch per
# phase) and a small fit ratio, on a CPU (KERAS_BACKEND=jax, jax installed): 12 minutes in all
# on a busy 2-core machine (2026-12-01), about 5 a dataset and 1.5 for the fit ratio; the levers
# step (bench_levers.py --smoke: 20 images per class, 48 px) 2.3 minutes more.
# Data, FER+ labels and weights come from the bundle, unpacked; or with --shared DIR (the
# default for --smoke when there is no bundle) straight from DIR in ../shared's layout, with
# the installed Keras. --xla-autotune sets XLA's --xla_gpu_autotune_level (0-4; XLA's default
# 4 tries and checks every convolution algorithm while compiling).
set -uo pipefail
smoke=""
bundle=.device
shared=""
out=${OUT:-runs/gpu}
dataset=both
budget=""
preset_limit=0
bench_limit=0
levers_limit=0
levers="baseline smoothing mixup"
only=""
with_bench=""
with_levers=""
autotune=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=--smoke ;;
        --bundle) bundle=$2; shift ;;
        --shared) shared=$2; shift ;;
        --out) out=$2; shift ;;
        --dataset) dataset=$2; shift ;;
        --budget) budget=$2; shift ;;
        --preset-limit) preset_limit=$2; shift ;;
        --bench-limit) bench_limit=$2; shift ;;
        --levers-limit) levers_limit=$2; shift ;;
        --levers) levers=$2; shift ;;
        --only) only=$2; shift ;;
        --with-bench) with_bench=1 ;;
        --with-levers) with_levers=1 ;;
        --xla-autotune) autotune=$2; shift ;;
        *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$budget" ]; then if [ -n "$smoke" ]; then budget=1500; else budget=570; fi; fi
case "$only" in ""|preset|levers|bench) ;; *) echo "error: --only takes preset, levers or bench, not $only" >&2; exit 2 ;; esac
case "$dataset" in fer2013|ferplus) datasets=("$dataset") ;; both) datasets=(fer2013 ferplus) ;;
    *) echo "error: --dataset takes fer2013, ferplus or both, not $dataset" >&2; exit 2 ;; esac
if [ -z "$shared" ] && [ ! -f "$bundle/keras.tar.xz" ]; then
    if [ -n "$smoke" ] && [ -d ../shared/data ]; then shared=../shared
    else echo "error: no bundle at $bundle: run benchmarks/gpu_bundle.py pack first (or pass --shared DIR)" >&2; exit 2; fi
fi
start=$(date +%s)
mkdir -p "$out"
log="$out/run.log"
: > "$log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# Experts share one graph: a persistent cache compiles it once, not once per expert.
export JAX_COMPILATION_CACHE_DIR="$work/jax-cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
if [ -n "$autotune" ]; then export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=$autotune"; fi
elapsed() { echo "[gpu_run] $1 at $(( $(date +%s) - start )) s" | tee -a "$log"; }
exit_note() { case "$1" in 124|137) echo "$1: stopped at its limit" ;; *) echo "$1" ;; esac; }

if [ -n "$shared" ]; then
    fer2013="$shared/data/fer2013/fer2013.csv.gz" ferplus="$shared/data/ferplus/fer2013new.csv"
    weights="$shared/weights"
    echo "data, FER+ labels and weights from $shared; Keras as installed" | tee -a "$log"
else
    fer2013="$work/fer2013.csv" ferplus="$work/fer2013new.csv" weights="$work/weights"
    python3 benchmarks/gpu_bundle.py unpack "$bundle" "$work" 2>&1 | tee -a "$log"
    if ! python3 -c "import keras" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$bundle"/wheels/*.whl
        export PYTHONPATH="$work/site"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, keras.backend.backend())"
  echo "XLA_FLAGS=${XLA_FLAGS:-} budget=${budget}s"; date -u; } 2>&1 | tee -a "$log"
elapsed "setup done"

# step_limit NAME CAP: print the seconds step NAME may run, what is left of the budget or CAP if
# smaller (0: no cap); or fail, saying why the step is skipped.
step_limit() {
    local left=$(( budget - ($(date +%s) - start) ))
    if [ "$left" -lt 30 ]; then elapsed "$1 skipped: ${left} s of the budget left" >&2; return 1; fi
    if [ "$2" -gt 0 ] && [ "$2" -lt "$left" ]; then echo "$2"; else echo "$left"; fi
}

if [ -z "$only" ] || [ "$only" = preset ]; then
    for name in "${datasets[@]}"; do
        limit=$(step_limit "reproduce --dataset $name" "$preset_limit") || continue
        labels=()
        if [ "$name" = ferplus ]; then labels=(--ferplus-labels "$ferplus"); fi
        elapsed "reproduce --dataset $name started (limit ${limit} s)"
        timeout --kill-after=10 "$limit" python3 -m skfer.cli reproduce --preset gpu $smoke \
            --data "$fer2013" --dataset "$name" "${labels[@]}" --weights-dir "$weights" \
            --out "$out/$name" 2>&1 | tee -a "$log"
        status=${PIPESTATUS[0]}
        elapsed "reproduce --dataset $name done (exit $(exit_note "$status"))"
        rm -f "$out/$name/best_backbone.h5"  # an intermediate file, not a result
    done
fi

if [ "$only" = levers ] || { [ -n "$with_levers" ] && [ -z "$only" ]; }; then
    if limit=$(step_limit "levers" "$levers_limit"); then
        elapsed "levers ($levers) started (limit ${limit} s)"
        # shellcheck disable=SC2086  # $levers is a list of variant names
        timeout --kill-after=10 "$limit" python3 benchmarks/bench_levers.py $smoke --data "$fer2013" \
            --weights-dir "$weights" --variants $levers --time-limit $(( limit - 10 )) \
            --json "$out/levers.json" 2>&1 | tee -a "$log"
        status=${PIPESTATUS[0]}
        elapsed "levers done (exit $(exit_note "$status"))"
    fi
fi

if [ "$only" = bench ] || { [ -n "$with_bench" ] && [ -z "$only" ]; }; then
    if [ -n "$smoke" ]; then bench=(--n 512 --size 48 --head 32); else bench=(--n 28709 --size 96 --head 1024 1024); fi  # all Training: 8,192 were too few to time
    if limit=$(step_limit "fit ratio" "$bench_limit"); then
        elapsed "fit ratio started (limit ${limit} s)"
        timeout --kill-after=10 "$limit" python3 benchmarks/bench_training.py --only fit --data "$fer2013" \
            --backbone mobilenet "${bench[@]}" --repeats 1 --fit-batch-sizes 64 256 --augment 2>&1 | tee -a "$log"
        status=${PIPESTATUS[0]}
        elapsed "fit ratio done (exit $(exit_note "$status"))"
    fi
fi
