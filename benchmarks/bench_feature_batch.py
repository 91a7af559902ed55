"""How the batch size of the feature cache's pass through a frozen backbone costs time.

    python benchmarks/bench_feature_batch.py [--n 960] [--repeats 3] [--batches 64 32 16]
        [--data FER2013.csv.gz] [--weights faceres.json]

Computes the block-12 maps (7x7x1024, stored as float16) of the face-trained MobileNet 1.0
that the cpu preset fine-tunes, at 224 px, for ``--n`` PublicTest images of FER2013, through
:func:`skfer.cache.predict_in_chunks` (the feature cache's path, as
``TransferCNNClassifier(feature_batch_size=...)`` runs it), in batches of each size in turn,
alternating, ``--repeats`` times, and keeps each size's fastest run: this VM's throughput
drifts by 15% run to run. Prints images per second, the ratio to the first batch size, the
system time per 100 images and the largest difference of the maps from those of the first
batch size.

The real weights and images matter: with random weights the maps are tiny (around 1e-15),
below float16's normal range, and numpy's cast of such values to float16 takes a slow path
that costs more than the forward pass; that made an earlier version of this benchmark
(random weights and inputs) find batches of 64 the fastest.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skfer import get_backbone  # noqa: E402
from skfer.cache import predict_in_chunks  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402
from skfer.model import build_transfer_model, split_at_block  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def block12_split(weights: str) -> tuple[keras.Model, keras.Model]:
    """The face-trained MobileNet 1.0 at 224 px cut at block 12: 48x48 gray images to block
    12's float16 maps, and those maps through block 13 and the head to 7 classes."""
    spec = get_backbone("mobilenet_vggface2")
    model = build_transfer_model(spec, channels=1, n_classes=7, input_size=224, weights=weights)
    return split_at_block(model, spec.block_ends, 1, maps_dtype="float16")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` (FER2013's CSV) and ``--weights`` (the face-trained MobileNet's)."""
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument(
        "--weights", default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json")
    )


def public_test_images(data: str, n: int) -> np.ndarray:
    """The first ``n`` PublicTest images of ``data``, shape ``(n, 48, 48, 1)``."""
    return load_fer2013(data, splits=["PublicTest"]).public_test.images[:n, ..., np.newaxis]


def timed(model: keras.Model, images: np.ndarray, batch_size: int) -> tuple:
    """The maps, wall seconds and system seconds of one pass."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    maps = predict_in_chunks(model, images, batch_size, dtype="float16")
    wall = time.perf_counter() - start
    return maps, wall, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=960, help="images per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 32, 16])
    add_data_arguments(parser)
    args = parser.parse_args()
    print(
        f"{platform.node()}, {os.cpu_count()} cores, Keras {keras.__version__} on "
        f"{keras.backend.backend()}; {args.n} PublicTest images at 224 px, "
        f"{args.repeats} repeats"
    )
    images = public_test_images(args.data, args.n)
    model, _ = block12_split(args.weights)
    for size in args.batches:  # trace each batch shape before timing
        predict_in_chunks(model, images[: 2 * size], size, dtype="float16")
    best: dict[int, tuple] = {}
    for _ in range(args.repeats):
        for size in args.batches:
            run = timed(model, images, size)
            if size not in best or run[1] < best[size][1]:
                best[size] = run
    reference = best[args.batches[0]]
    print("| feature batch | img/s | ratio | system s per 100 images | largest map difference |")
    print("|---|---|---|---|---|")
    for size in args.batches:
        maps, wall, system = best[size]
        difference = np.abs(maps.astype(np.float32) - reference[0].astype(np.float32)).max()
        print(
            f"| {size} | {len(images) / wall:.1f} | {reference[1] / wall:.2f} | "
            f"{100 * system / len(images):.2f} | {difference:.3g} |"
        )


if __name__ == "__main__":
    main()
