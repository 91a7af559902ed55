#!/usr/bin/env bash
# One GPU check, prepared: install skfer with a CUDA TensorFlow, then time both phases of the
# VGGFace graph at 224 px with mixed precision on FER2013. Run from the project root on a GPU
# machine; ../shared/data/fer2013/fer2013.csv.gz must be there (or pass --data).
set -euo pipefail
python3 -m venv /tmp/skfer-gpu
# shellcheck disable=SC1091
source /tmp/skfer-gpu/bin/activate
pip install --quiet --upgrade pip
pip install --quiet -e . "tensorflow[and-cuda]>=2.18"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python benchmarks/bench_gpu.py --steps 50 --batch-size 64 --precision mixed_float16 "$@"
python benchmarks/bench_gpu.py --steps 50 --batch-size 64 --precision float32 "$@"
