"""How the batch size of a frozen backbone's feature pass costs time on a CPU.

    python benchmarks/bench_feature_batch.py [--n 512] [--repeats 2] [--batches 64 16 8]

Computes the block-12 maps (7x7x1024, stored as float16) of the MobileNet 1.0 that the cpu
preset fine-tunes, at 224 px, through :func:`skfer.cache.predict_in_chunks` (the feature
cache's path), in batches of each size in turn, alternating, ``--repeats`` times, and keeps
each size's fastest run: this VM's throughput drifts by 15% run to run. Random weights and
inputs: the cost does not depend on the values. Prints images per second, the ratio to the
first batch size, the system time and minor page faults per image, and the largest
difference of the float16 maps from those of the first batch size. It answers whether a
smaller batch than the model's (64) would compute the cpu preset's maps faster.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skfer.cache import predict_in_chunks  # noqa: E402


def block12_model() -> keras.Model:
    """MobileNet 1.0 at 224 px up to block 12's output, random weights."""
    backbone = keras.applications.MobileNet(
        input_shape=(224, 224, 3), include_top=False, weights=None
    )
    return keras.Model(backbone.input, backbone.get_layer("conv_pw_12_relu").output)


def timed(model: keras.Model, images: np.ndarray, batch_size: int) -> tuple:
    """The maps, wall seconds, system seconds and minor page faults of one pass."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    maps = predict_in_chunks(model, images, batch_size, dtype="float16")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return maps, wall, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images per pass")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 16, 8])
    args = parser.parse_args()
    print(
        f"{platform.node()}, {os.cpu_count()} cores, Keras {keras.__version__} on "
        f"{keras.backend.backend()}; {args.n} images at 224 px, {args.repeats} repeats"
    )
    model = block12_model()
    images = np.random.default_rng(0).random((args.n, 224, 224, 3), dtype=np.float32)
    for size in args.batches:  # trace each batch shape before timing
        predict_in_chunks(model, images[: 2 * size], size, dtype="float16")
    best: dict[int, tuple] = {}
    for _ in range(args.repeats):
        for size in args.batches:
            run = timed(model, images, size)
            if size not in best or run[1] < best[size][1]:
                best[size] = run
    reference = best[args.batches[0]]
    print(
        "| feature batch | img/s | ratio | system s per 100 images | minor faults per image "
        "| largest map difference |"
    )
    print("|---|---|---|---|---|---|")
    for size in args.batches:
        maps, wall, system, faults = best[size]
        difference = np.abs(maps.astype(np.float32) - reference[0].astype(np.float32)).max()
        print(
            f"| {size} | {args.n / wall:.1f} | {reference[1] / wall:.2f} | "
            f"{100 * system / args.n:.2f} | {faults / args.n:.0f} | {difference:.3g} |"
        )


if __name__ == "__main__":
    main()
