"""Forward and training speed of one graph in float32 and in mixed precision, in one run.

    python benchmarks/bench_precision.py [--backbone vgg16] [--size 224] [--n 128]

Builds the same transfer graph (random weights: the cost does not depend on the values) in
each precision and prints img/s of a forward pass (the frozen phase's feature computation) and
of a training step with the whole network trainable (the long phase), on real FER2013 images.
On CPUs with bfloat16 matrix units (AVX512_BF16 / AMX) ``mixed_bfloat16`` can be much faster;
elsewhere it may be slower. The ratio depends on the backbone and the size: run it for yours.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from skfer import get_backbone  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402
from skfer.model import build_transfer_model, split_at_pooling  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"
PRECISIONS = ("float32", "mixed_bfloat16")


def _best_seconds(function, repeats: int) -> float:
    function()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(precision, X, y, backbone, size, batch_size, repeats):
    """(forward img/s, training img/s) of the graph in ``precision``."""
    keras.utils.set_random_seed(0)
    model = build_transfer_model(get_backbone(backbone), channels=1, n_classes=7,
                                 input_size=size, precision=precision)  # fmt: skip
    feature_model, _ = split_at_pooling(model)
    forward = _best_seconds(
        lambda: feature_model.predict(X, batch_size=batch_size, verbose=0), repeats
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    train = _best_seconds(
        lambda: model.fit(X, y, batch_size=batch_size, epochs=1, verbose=0), repeats
    )
    return len(X) / forward, len(X) / train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n", type=int, default=128, help="Training images per pass")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{datetime.date.today()} {platform.platform()} {os.cpu_count()} CPUs, "
          f"keras {keras.__version__}; {args.backbone} at {args.size} px, batch "
          f"{args.batch_size}, {args.n} real FER2013 Training images")  # fmt: skip
    data = load_fer2013(DATA, splits=["Training"])
    X, y = data.train.images[: args.n, ..., None], data.train.target[: args.n]
    rates = {
        precision: measure(precision, X, y, args.backbone, args.size, args.batch_size, args.repeats)
        for precision in PRECISIONS
    }
    for precision, (forward, train) in rates.items():
        print(f"{precision:15s} forward {forward:7.1f} img/s   training {train:7.1f} img/s")
    (f32_forward, f32_train), (bf16_forward, bf16_train) = rates.values()
    print(f"mixed_bfloat16 / float32: forward {bf16_forward / f32_forward:.2f}x, "
          f"training {bf16_train / f32_train:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
