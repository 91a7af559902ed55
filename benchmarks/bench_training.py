"""Training and prediction cost of skfer against hand-written Keras, measured in one run.

    python benchmarks/bench_training.py [--size 48] [--n 4096] [--only NAME ...]

Prints, for the same graph on the same real FER2013 images:

- fit img/s of ``TransferCNNClassifier`` / a hand-written ``keras.Model.fit`` (goal >= 0.95);
- ``predict_proba`` img/s / ``model.predict`` (goal >= 0.95);
- the frozen phase with 10 short epochs / one backbone forward pass (goal <= 1.2);
- phase 1 of 7 one-vs-all experts / phase 1 of one expert (goal <= 1.5);
- peak RSS of a fit on all 28,709 Training images at 224 px (VGG16, a few batches per phase;
  goal <= 3 GiB), in a fresh process.

Ratios use MobileNet 0.25 (random weights: the cost does not depend on the values) at a small
input size; they compare equal work, so they do not depend on the size much, except where the
head's cost is not negligible next to the backbone's (the frozen-phase ratio grows with it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skfer import OneVsAllExperts, TransferCNNClassifier, get_backbone  # noqa: E402
from skfer.cache import feature_cache  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402
from skfer.model import build_transfer_model, split_at_pooling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/fer2013/fer2013.csv.gz"


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch; the first (tracing) is left out of rates."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def _rate(n, times):
    return n / float(np.median(times[1:]))


def bench_fit(X, y, size):
    params = dict(backbone="mobilenet", weights=None, input_size=size, head=(256, 256),
                  short_epochs=0, long_epochs=4, batch_size=64, validation_fraction=None,
                  patience=None, random_state=0, verbose=0)  # fmt: skip
    timer = EpochTimer()
    TransferCNNClassifier(**params).fit(X, y, callbacks=[timer])
    skfer_rate = _rate(len(X), timer.times)

    keras.utils.set_random_seed(0)
    model = build_transfer_model(get_backbone("mobilenet"), channels=1, n_classes=7,
                                 input_size=size, head=(256, 256))  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    model.fit(X[..., None], y, batch_size=64, epochs=4, shuffle=True, callbacks=[timer], verbose=0)
    keras_rate = _rate(len(X), timer.times)
    print(f"fit: skfer {skfer_rate:.0f} img/s, plain Keras {keras_rate:.0f} img/s, "
          f"ratio {skfer_rate / keras_rate:.3f} (goal >= 0.95)")  # fmt: skip


def bench_predict(X, y, size):
    clf = TransferCNNClassifier("mobilenet", weights=None, input_size=size, head=(256, 256),
                                short_epochs=1, long_epochs=0, validation_fraction=None,
                                batch_size=64, verbose=0, random_state=0)  # fmt: skip
    clf.fit(X[:256], y[:256])
    model = clf.model_
    images = X[..., None]

    def best_of(function, repeats=3):
        function()  # trace
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return len(X) / min(times)

    skfer_rate = best_of(lambda: clf.predict_proba(X))
    keras_rate = best_of(lambda: model.predict(images, batch_size=64, verbose=0))
    print(f"predict: skfer {skfer_rate:.0f} img/s, plain Keras {keras_rate:.0f} img/s, "
          f"ratio {skfer_rate / keras_rate:.3f} (goal >= 0.95)")  # fmt: skip


def bench_frozen_phase(X, y, size):
    params = dict(backbone="mobilenet", weights=None, input_size=size, head=(256, 256),
                  short_epochs=10, long_epochs=0, batch_size=64, validation_fraction=None,
                  patience=None, random_state=0, verbose=0)  # fmt: skip
    TransferCNNClassifier(**params).fit(X[:256], y[:256])  # warm up TF
    feature_cache.clear()
    start = time.perf_counter()
    clf = TransferCNNClassifier(**params).fit(X, y)
    frozen = time.perf_counter() - start

    feature_model, _ = split_at_pooling(clf.model_)
    feature_model.predict(X[:256, ..., None], batch_size=64, verbose=0)
    start = time.perf_counter()
    feature_model.predict(X[..., None], batch_size=64, verbose=0)
    forward = time.perf_counter() - start
    print(f"frozen phase, 10 epochs: {frozen:.1f} s; one backbone forward pass: {forward:.1f} s; "
          f"ratio {frozen / forward:.2f} (goal <= 1.2; naive ~10)")  # fmt: skip


def bench_experts(X, y, size):
    params = dict(backbone="mobilenet", weights=None, input_size=size, head=(256, 256),
                  short_epochs=5, long_epochs=0, batch_size=64, validation_fraction=None,
                  patience=None, random_state=0, verbose=0)  # fmt: skip
    TransferCNNClassifier(**params).fit(X[:256], y[:256])  # warm up TF
    feature_cache.clear()
    start = time.perf_counter()
    OneVsAllExperts(TransferCNNClassifier(**params), classes=[3]).fit(X, y)
    one = time.perf_counter() - start
    feature_cache.clear()
    start = time.perf_counter()
    OneVsAllExperts(TransferCNNClassifier(**params)).fit(X, y)
    seven = time.perf_counter() - start
    print(f"experts, phase 1: one {one:.1f} s, seven {seven:.1f} s, ratio {seven / one:.2f} "
          f"(goal <= 1.5; naive 7)")  # fmt: skip


PEAK_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, keras, numpy as np
    from skfer import TransferCNNClassifier
    from skfer.datasets import load_fer2013

    class StopAfter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= 3:
                self.model.stop_training = True

    data = load_fer2013({data!r}, splits=["Training"])
    clf = TransferCNNClassifier("vgg16", weights=None, input_size=224, short_epochs=1,
                                long_epochs=1, batch_size=32, cache_features=False,
                                validation_fraction=None, verbose=0, random_state=0)
    clf.fit(data.train.images, data.train.target, callbacks=[StopAfter()])
    print("EPOCHS", clf.history_["phase"])
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def bench_peak_rss():
    script = PEAK_RSS_SCRIPT.format(data=str(DATA))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-2000:])
        raise SystemExit("peak-RSS run failed")
    peak = int(result.stdout.split("PEAK_RSS_KIB")[1].split()[0]) / 1024**2
    print(f"peak RSS, VGG16 at 224 px on all 28,709 Training images (3 batches per phase): "
          f"{peak:.2f} GiB (goal <= 3 GiB; upscaled float32 data alone would be 16.2 GiB), "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip


BENCHES = {
    "fit": bench_fit,
    "predict": bench_predict,
    "frozen": bench_frozen_phase,
    "experts": bench_experts,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=48, help="backbone input size in pixels")
    parser.add_argument("--n", type=int, default=4096, help="Training images used")
    parser.add_argument("--only", nargs="*", choices=[*BENCHES, "rss"], default=None)
    args = parser.parse_args(argv)
    print(f"{datetime.date.today()} {platform.platform()} {platform.processor()} "
          f"{os.cpu_count()} CPUs, keras {keras.__version__}")  # fmt: skip
    data = load_fer2013(DATA, splits=["Training"])
    rng = np.random.default_rng(0)
    index = rng.choice(len(data.train.target), args.n, replace=False)
    X, y = data.train.images[index], data.train.target[index]
    print(f"data: {args.n} real FER2013 Training images, input size {args.size} px")
    for name, bench in BENCHES.items():
        if args.only is None or name in args.only:
            bench(X, y, args.size)
    if args.only is None or "rss" in args.only:
        bench_peak_rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
