"""How Keras' input pipeline costs the cpu preset time: tf.data's autotuning against batches
read by Keras' own threads (a ``keras.utils.PyDataset`` with ``workers=2``) and against skfer's
pipeline (:func:`skfer.backend.keras_input`: tf.data, autotuning off, two batches ahead).

    python benchmarks/bench_loader.py [--n 2560] [--steps 120] [--epochs 3] [--repeats 2]
        [--data FER2013.csv.gz] [--weights faceres.json]

Two measurements, the three paths taking turns ``--repeats`` times in one process:

- **maps**: the block-12 maps (float16) of the face-trained MobileNet 1.0 at 224 px for
  ``--n`` PublicTest images, in the feature cache's chunks (:data:`skfer.cache.CHUNK_BYTES`,
  320 images a call), each chunk through ``model.predict`` on the array (Keras' own pipeline,
  as skfer predicted until 2026-12-05), on :class:`skfer.backend.OrderedBatches` of it read by
  two of Keras' threads, or through :func:`skfer.backend.predict_in_full_batches` (skfer's
  pipeline).
- **epochs**: the preset's block-13 model (block 13 and the head) trained for ``--epochs``
  epochs of ``--steps`` batches of 64 random maps with mirror images and mixup, by
  :class:`skfer.training.ShuffledBatches` given to Keras as they are (tf.data autotuned), with
  ``workers=2`` (Keras' own threads, autotuning off), or through skfer's pipeline.

Prints wall seconds, the CPU's idle share (1 - process CPU time / (cores x wall)) and the
ratio to Keras' own pipeline, and checks that all paths give the same maps. The threaded path
is not skfer's: run v19 of the cpu preset with it peaked at 22.8 GB of resident memory against
5.0 GB (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import nullcontext

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_feature_batch import add_data_arguments, block12_split, public_test_images  # noqa: E402

from skfer.backend import OrderedBatches, keras_input, predict_in_full_batches  # noqa: E402
from skfer.training import ShuffledBatches  # noqa: E402

CHUNK = 320  # images per predict call in the feature cache's path (64 MiB of float32 maps)
BATCH = 32  # the cpu preset's feature_batch_size
THREADS = 2
PATHS = {
    "keras": "Keras' pipeline (autotuned)",
    "threads": "Keras' threads (workers=2)",
    "skfer": "skfer's pipeline (keras_input)",
}


def timed(run) -> tuple:
    """``run()``'s result, wall seconds and the CPU's idle share meanwhile."""
    cpu, start = time.process_time(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    return result, wall, 1 - (time.process_time() - cpu) / (os.cpu_count() * wall)


def maps_by(model: keras.Model, images: np.ndarray, path: str) -> np.ndarray:
    """The maps of ``images``, a chunk per ``predict`` call, as the feature cache computes them."""
    chunks = []
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        if path == "keras":
            chunks.append(model.predict(chunk, batch_size=BATCH, verbose=0))
        elif path == "threads":
            threaded = OrderedBatches(chunk, batch_size=BATCH)
            threaded.workers = THREADS
            chunks.append(model.predict(threaded, verbose=0))
        else:
            chunks.append(predict_in_full_batches(model, chunk, BATCH))
    return np.concatenate(chunks).astype(np.float16)


def train_epochs(trained: keras.Model, maps: np.ndarray, epochs: int, path: str) -> list:
    """Wall seconds of each epoch of the block-13 model on ``maps`` and their mirror images."""
    targets = keras.utils.to_categorical(np.arange(len(maps)) % 7, 7)
    batches = ShuffledBatches(maps, targets, 64, seed=0, mixup_alpha=0.4, mirrored=maps[:, :, ::-1])
    if path == "threads":
        batches.workers = THREADS
    seconds = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    with keras_input(batches) if path == "skfer" else nullcontext((batches, [])) as given:
        data, callbacks = given
        trained.fit(
            data, epochs=epochs, verbose=0, callbacks=[EpochTimes(), *callbacks], shuffle=False
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2560, help="images whose maps are computed")
    parser.add_argument("--steps", type=int, default=120, help="batches per training epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    add_data_arguments(parser)
    args = parser.parse_args()
    print(
        f"{platform.node()}, {os.cpu_count()} cores, Keras {keras.__version__} on "
        f"{keras.backend.backend()}; maps of {args.n} PublicTest images at 224 px; "
        f"{args.epochs} epochs of {args.steps} batches; {args.repeats} repeats"
    )
    images = public_test_images(args.data, args.n)
    frozen, trained = block12_split(args.weights)
    trained.compile(keras.optimizers.Adam(2e-4), "categorical_crossentropy")
    for path in PATHS:  # trace the prediction step
        maps_by(frozen, images[:CHUNK], path)
    rng = np.random.default_rng(0)
    shape = (args.steps * 64, *frozen.output_shape[1:])
    fake_maps = np.maximum(rng.standard_normal(shape, np.float32), 0).astype(np.float16)
    train_epochs(trained, fake_maps[:640], 1, "threads")  # trace the training step
    results: dict[str, list] = {"maps": [], "epochs": []}
    reference = None
    for _ in range(args.repeats):
        for path in PATHS:
            maps, wall, idle = timed(lambda p=path: maps_by(frozen, images, p))
            if reference is None:
                reference = maps
            difference = float(np.abs(maps.astype(np.float32) - reference).max())
            results["maps"].append((path, wall, idle, difference))
            seconds, wall, idle = timed(
                lambda p=path: train_epochs(trained, fake_maps, args.epochs, p)
            )
            results["epochs"].append((path, wall, idle, seconds))
    print("| measurement | path | wall s (each repeat) | idle share | ratio to Keras' pipeline |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        old = [row for row in rows if row[0] == "keras"]
        for path, label in PATHS.items():
            mine = [row for row in rows if row[0] == path]
            walls = " / ".join(f"{row[1]:.1f}" for row in mine)
            idle = " / ".join(f"{row[2]:.0%}" for row in mine)
            ratio = sum(row[1] for row in old) / sum(row[1] for row in mine)
            print(f"| {name} | {label} | {walls} | {idle} | {ratio:.2f} |")
    for path, _, _, seconds in results["epochs"]:
        epochs = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"epoch seconds, {path}: {epochs}")
    largest = max(row[3] for row in results["maps"])
    print(f"largest difference between the paths' maps: {largest:.3g}")


if __name__ == "__main__":
    main()
