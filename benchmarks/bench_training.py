"""Training and prediction cost of skfer against hand-written Keras, measured in one run.

    python benchmarks/bench_training.py [--backbone mobilenet] [--size 48] [--n 4096]
                                        [--head 256 256] [--only NAME ...] [--data CSV]
                                        [--fit-batch-sizes 64 256] [--augment] [--precision P]

Prints, for the same graph on the same real FER2013 images:

- fit img/s of ``TransferCNNClassifier`` / a hand-written ``keras.Model.fit`` (goal >= 0.95 on
  the CPU, >= 0.9 on a GPU), per batch size; runs on any Keras backend (``KERAS_BACKEND=jax``);
- ``predict_proba`` img/s / ``model.predict`` (goal >= 0.95);
- the frozen phase with 10 short epochs / one backbone forward pass (goal <= 1.2);
- phase 1 of 7 one-vs-all experts / phase 1 of one expert (goal <= 1.5);
- peak RSS of a fit on all 28,709 Training images at 224 px (VGG16, a few batches per phase;
  goal <= 3 GiB), in a fresh process per batch size and precision.

By default the ratios use MobileNet 0.25 (random weights: the cost does not depend on the
values) at 48 px. The fit and predict ratios compare equal work, so they hardly depend on the
size. The frozen-phase and expert ratios do: they compare the head's training and a fixed cost
per fit (building the model, tracing the training step) with the backbone's forward pass, so
they are worst with a tiny backbone at a tiny size. For the study's setting run

    python benchmarks/bench_training.py --backbone vgg16 --size 224 --n 512 \
        --head 1024 1024 --only frozen experts
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
from skfer.backend import resolve_jit_compile  # noqa: E402
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


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _best_of_interleaved(first, second, repeats):
    """Minimum wall time of each of two functions, run alternately ``repeats`` times.

    This VM's speed drifts by up to 2x for minutes at a time; alternating the two and keeping
    each one's fastest run compares them under the same conditions.
    """
    times = [[], []]
    for _ in range(repeats):
        times[0].append(_seconds(first))
        times[1].append(_seconds(second))
    return min(times[0]), min(times[1])


def bench_fit(X, y, size, backbone, head, repeats, *, batch_size=64, augmentation=False,
              precision="float32"):  # fmt: skip
    params = dict(backbone=backbone, weights=None, input_size=size, head=head,
                  short_epochs=0, long_epochs=3, batch_size=batch_size, validation_fraction=None,
                  patience=None, augmentation=augmentation, precision=precision,
                  random_state=0, verbose=0)  # fmt: skip

    def skfer_epochs():
        timer = EpochTimer()
        TransferCNNClassifier(**params).fit(X, y, callbacks=[timer])
        return timer.times[1:]  # the first epoch traces the graph

    def keras_epochs():
        keras.utils.set_random_seed(0)
        model = build_transfer_model(get_backbone(backbone), channels=1, n_classes=7,
                                     input_size=size, head=head, augmentation=augmentation,
                                     precision=precision)  # fmt: skip
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=resolve_jit_compile("auto"),  # what plain Keras compiles by default
        )
        timer = EpochTimer()
        model.fit(X[..., None], y, batch_size=batch_size, epochs=3, shuffle=True,
                  callbacks=[timer], verbose=0)  # fmt: skip
        return timer.times[1:]

    times = {"skfer": [], "keras": []}
    for _ in range(repeats):  # alternate: this VM's speed drifts for minutes at a time
        times["skfer"] += skfer_epochs()
        times["keras"] += keras_epochs()
    skfer_rate, keras_rate = (len(X) / min(times[side]) for side in ("skfer", "keras"))
    print(f"fit, batch {batch_size}{', augmented' if augmentation else ''}, {precision}: "
          f"skfer {skfer_rate:.0f} img/s, plain Keras {keras_rate:.0f} img/s, "
          f"ratio {skfer_rate / keras_rate:.3f} (goal >= 0.95 on the CPU, 0.9 on a GPU)",
          flush=True)  # fmt: skip


def bench_predict(X, y, size, backbone, head, repeats):
    clf = TransferCNNClassifier(backbone, weights=None, input_size=size, head=head,
                                short_epochs=1, long_epochs=0, validation_fraction=None,
                                batch_size=64, verbose=0, random_state=0)  # fmt: skip
    clf.fit(X[:256], y[:256])
    images = X[..., None]

    def skfer_predict():
        clf.predict_proba(X)

    def keras_predict():
        clf.model_.predict(images, batch_size=64, verbose=0)

    skfer_predict(), keras_predict()  # trace
    skfer, plain = _best_of_interleaved(skfer_predict, keras_predict, 3 * repeats)
    print(f"predict: skfer {len(X) / skfer:.0f} img/s, plain Keras {len(X) / plain:.0f} img/s, "
          f"ratio {plain / skfer:.3f} (goal >= 0.95)")  # fmt: skip


def bench_frozen_phase(X, y, size, backbone, head, repeats):
    params = dict(backbone=backbone, weights=None, input_size=size, head=head,
                  short_epochs=10, long_epochs=0, batch_size=64, validation_fraction=None,
                  patience=None, random_state=0, verbose=0)  # fmt: skip
    clf = TransferCNNClassifier(**params).fit(X[:64], y[:64])  # warm up TF
    feature_model, _ = split_at_pooling(clf.model_)
    feature_model.predict(X[:64, ..., None], batch_size=64, verbose=0)

    def frozen_phase():
        feature_cache.clear()
        TransferCNNClassifier(**params).fit(X, y)

    def forward_pass():
        feature_model.predict(X[..., None], batch_size=64, verbose=0)

    frozen, forward = _best_of_interleaved(frozen_phase, forward_pass, repeats)
    print(f"frozen phase, 10 epochs: {frozen:.1f} s; one backbone forward pass: {forward:.1f} s; "
          f"ratio {frozen / forward:.2f} (goal <= 1.2; naive ~10)")  # fmt: skip


def bench_experts(X, y, size, backbone, head, repeats):
    params = dict(backbone=backbone, weights=None, input_size=size, head=head,
                  short_epochs=5, long_epochs=0, batch_size=64, validation_fraction=None,
                  patience=None, random_state=0, verbose=0)  # fmt: skip
    TransferCNNClassifier(**params).fit(X[:64], y[:64])  # warm up TF

    def experts(classes):
        feature_cache.clear()
        OneVsAllExperts(TransferCNNClassifier(**params), classes=classes).fit(X, y)

    one, seven = _best_of_interleaved(lambda: experts([3]), lambda: experts(None), repeats)
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
                                long_epochs=1, batch_size={batch_size}, cache_features=False,
                                precision={precision!r}, validation_fraction=None, verbose=0,
                                random_state=0)
    clf.fit(data.train.images, data.train.target, callbacks=[StopAfter()])
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)

RSS_SETTINGS = ((16, "float32"), (32, "float32"), (64, "float32"), (32, "mixed_bfloat16"))


def bench_peak_rss():
    print("peak RSS, VGG16 at 224 px on all 28,709 Training images, 3 batches per phase, "
          "each in a fresh process (goal <= 3 GiB; the upscaled float32 data alone would be "
          "16.2 GiB):")  # fmt: skip
    for batch_size, precision in RSS_SETTINGS:
        script = PEAK_RSS_SCRIPT.format(data=str(DATA), batch_size=batch_size, precision=precision)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-2000:])
            raise SystemExit("peak-RSS run failed")
        peak = int(result.stdout.split("PEAK_RSS_KIB")[1].split()[0]) / 1024**2
        print(f"  batch {batch_size:3d}, {precision:15s} {peak:.2f} GiB, "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip


BENCHES = {
    "fit": bench_fit,
    "predict": bench_predict,
    "frozen": bench_frozen_phase,
    "experts": bench_experts,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="mobilenet", help="registered backbone name")
    parser.add_argument("--size", type=int, default=48, help="backbone input size in pixels")
    parser.add_argument("--n", type=int, default=4096, help="Training images used")
    parser.add_argument("--head", type=int, nargs="+", default=[256, 256], help="head widths")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side")
    parser.add_argument("--only", nargs="*", choices=[*BENCHES, "rss"], default=None)
    parser.add_argument("--data", default=str(DATA), help="FER2013 CSV (default: %(default)s)")
    parser.add_argument("--fit-batch-sizes", type=int, nargs="+", default=[64],
                        help="batch sizes of the fit ratio")  # fmt: skip
    parser.add_argument("--augment", action="store_true", help="augmentation on in the fit ratio")
    parser.add_argument("--precision", default="float32", help="dtype policy of the fit ratio")
    args = parser.parse_args(argv)
    print(f"{datetime.date.today()} {platform.platform()} {platform.processor()} "
          f"{os.cpu_count()} CPUs, keras {keras.__version__} on {keras.backend.backend()}",
          flush=True)  # fmt: skip
    data = load_fer2013(args.data, splits=["Training"])
    rng = np.random.default_rng(0)
    index = rng.choice(len(data.train.target), args.n, replace=False)
    X, y = data.train.images[index], data.train.target[index]
    print(f"data: {args.n} real FER2013 Training images; {args.backbone} (random weights) at "
          f"{args.size} px, head {tuple(args.head)}")  # fmt: skip
    common = (X, y, args.size, args.backbone, tuple(args.head), args.repeats)
    if args.only is None or "fit" in args.only:
        for batch_size in args.fit_batch_sizes:
            bench_fit(*common, batch_size=batch_size, augmentation=args.augment,
                      precision=args.precision)  # fmt: skip
    for name, bench in BENCHES.items():
        if name != "fit" and (args.only is None or name in args.only):
            bench(*common)
    if args.only is None or "rss" in args.only:
        bench_peak_rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
