#!/usr/bin/env bash
# One prepared GPU run on Keras' JAX backend, for a GPU machine without internet, TensorFlow or
# Keras, laid out as ../shared/gpu/README.md describes. From the project root:
#
#   python benchmarks/gpu_bundle.py pack ../shared WHEELS .device   # here, once (< 64 MiB)
#   benchmarks/gpu_run.sh [--smoke] [--bundle .device] [--out runs/gpu]
#                         [--preset-limit SECONDS] [--bench-limit SECONDS] [--xla-autotune LEVEL]
#                         [--dataset fer2013|ferplus] [--only preset|bench]
#
# It unpacks FER2013 and the weights from the bundle, installs the brought wheels if Keras is
# missing, then writes into --out: run.log (device, the fit ratio of TransferCNNClassifier to a
# hand-written Keras model of the same graph at batch 64 and 256, wall times) and the GPU
# preset's table, JSON and figures (reproduce/). --smoke shrinks both to a minute or two on a
# CPU (try it there first: KERAS_BACKEND=jax with jax installed). The limits (default: none)
# stop a step that runs long, so that a lease's time limit still leaves the next step's output.
# --xla-autotune sets XLA's --xla_gpu_autotune_level (0-4; XLA's default 4 tries and checks
# every convolution algorithm while compiling): the first epoch of a phase took 58-133 s on an
# H100, nearly all of it compiling, against 3 s for each later epoch. --dataset ferplus runs
# the preset on FER+'s labels (the bundle carries fer2013new.csv). --only runs one of the two
# steps, so that a lease's calls can take one each.
set -uo pipefail
smoke=""
bundle=.device
out=runs/gpu
preset_limit=0
bench_limit=0
autotune=""
dataset=fer2013
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=--smoke ;;
        --bundle) bundle=$2; shift ;;
        --out) out=$2; shift ;;
        --preset-limit) preset_limit=$2; shift ;;
        --bench-limit) bench_limit=$2; shift ;;
        --xla-autotune) autotune=$2; shift ;;
        --dataset) dataset=$2; shift ;;
        --only) only=$2; shift ;;
        *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
case "$only" in ""|preset|bench) ;; *) echo "error: --only takes preset or bench, not $only" >&2; exit 2 ;; esac
[ -f "$bundle/keras.tar.xz" ] || { echo "error: no bundle at $bundle: run benchmarks/gpu_bundle.py pack first" >&2; exit 2; }
start=$(date +%s)
mkdir -p "$out"
log="$out/run.log"
work=$(mktemp -d)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# Experts share one graph: a persistent cache compiles it once, not once per expert.
export JAX_COMPILATION_CACHE_DIR="$work/jax-cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
if [ -n "$autotune" ]; then export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=$autotune"; fi
elapsed() { echo "[gpu_run] $1 at $(( $(date +%s) - start )) s" | tee -a "$log"; }

python3 benchmarks/gpu_bundle.py unpack "$bundle" "$work" 2>&1 | tee "$log"
if ! python3 -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$bundle"/wheels/*.whl
    export PYTHONPATH="$work/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, keras.backend.backend())"
  echo "XLA_FLAGS=${XLA_FLAGS:-}"; date -u; } 2>&1 | tee -a "$log"
elapsed "setup done"

if [ -n "$smoke" ]; then bench=(--n 512 --size 48 --head 32); else bench=(--n 28709 --size 96 --head 1024 1024); fi  # all Training: 8,192 were too few to time
labels=()
if [ "$dataset" = ferplus ]; then labels=(--ferplus-labels "$work/fer2013new.csv"); fi
if [ "$only" != bench ]; then
    timeout "$preset_limit" python3 -m skfer.cli reproduce --preset gpu $smoke --data "$work/fer2013.csv" \
        --dataset "$dataset" "${labels[@]}" --weights-dir "$work/weights" --out "$out/reproduce" 2>&1 | tee -a "$log"
    elapsed "reproduce --preset gpu done (exit ${PIPESTATUS[0]})"
    rm -f "$out/reproduce/best_backbone.h5"  # an intermediate file, not a result
fi

if [ "$only" != preset ]; then
    timeout "$bench_limit" python3 benchmarks/bench_training.py --only fit --data "$work/fer2013.csv" --backbone mobilenet \
        "${bench[@]}" --repeats 1 --fit-batch-sizes 64 256 --augment 2>&1 | tee -a "$log"
    elapsed "fit ratio done (exit ${PIPESTATUS[0]})"
fi
rm -rf "$work"
