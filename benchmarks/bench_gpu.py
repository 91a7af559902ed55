"""Throughput of both phases of the VGGFace graph at 224 px with mixed precision, on a GPU.

    python benchmarks/bench_gpu.py [--steps 50] [--batch-size 64] [--precision mixed_float16]

Random VGGFace weights (the cost does not depend on their values, and the machine may have no
internet), real FER2013 Training images. Prints images per second of the short phase (frozen
backbone; the uncached path, as with augmentation) and of the long phase, and the peak GPU
memory TensorFlow allocated.
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
import tensorflow as tf  # noqa: E402

from skfer import TransferCNNClassifier  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"


class StepTimer(keras.callbacks.Callback):
    """Times ``steps`` batches per phase after ``warmup`` batches, then stops the phase."""

    def __init__(self, steps: int, warmup: int, batch_size: int):
        super().__init__()
        self.steps, self.warmup, self.batch_size = steps, warmup, batch_size
        self.rates: list[float] = []

    def on_train_begin(self, logs=None):
        self.start = None

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch + 1 == self.warmup + self.steps:
            elapsed = time.perf_counter() - self.start
            self.rates.append(self.steps * self.batch_size / elapsed)
            self.model.stop_training = True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="mixed_float16")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    print(f"{datetime.date.today()} {platform.node()} GPUs: {[g.name for g in gpus]}")
    for gpu in gpus:
        print("  ", tf.config.experimental.get_device_details(gpu).get("device_name"))
    data = load_fer2013(args.data, splits=["Training"])
    timer = StepTimer(args.steps, args.warmup, args.batch_size)
    clf = TransferCNNClassifier(
        "vggface", weights=None, input_size=224, short_epochs=1, long_epochs=1,
        batch_size=args.batch_size, precision=args.precision, cache_features=False,
        validation_fraction=None, patience=None, verbose=0, random_state=0,
    )  # fmt: skip
    clf.fit(data.train.images, data.train.target, callbacks=[timer])
    for phase, rate in zip(
        ("short (frozen backbone)", "long (all layers)"), timer.rates, strict=False
    ):
        print(f"{phase}: {rate:.0f} img/s at 224 px, {args.precision}, batch {args.batch_size}")
    if gpus:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1024**3
        print(f"peak GPU memory: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
