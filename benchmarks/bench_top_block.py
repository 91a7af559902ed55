"""Does fine-tuning the face-trained MobileNet's last block pay on the CPU?

    python benchmarks/bench_top_block.py [--train-images 2000] [--epochs-head 10]
                                         [--epochs-block 6] [--blocks 0 1] [--uncached]

The cpu preset trains only a head on the frozen face-trained MobileNet 1.0 (224 px). On the
GPU, fine-tuning the whole backbone scored 4.9 points more. This fits
``TransferCNNClassifier('mobilenet_vggface2', input_size=224, unfreeze_blocks=N)`` on the split
of ``skfer reproduce`` (10% of Training held out, stratified, seed 0; ``--train-images`` takes a
stratified subset of Training first), for each N of ``--blocks``:
0 trains the head alone on the frozen backbone (what the cpu preset does); 1 trains the same
head, then block 13 and the head at a lower learning rate, on the cached float16 maps of block
12 (7x7x1024 per image). ``--uncached`` adds N=1 with ``cache_features=False`` (the whole
backbone runs at every step). Held-out accuracy chooses; PublicTest is reported. The fits
share one feature cache, as experts and folds do: a later fit reuses the features and maps of
an earlier one on the same images.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skfer import TransferCNNClassifier  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument(
        "--weights", default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json")
    )
    parser.add_argument("--train-images", type=int, default=None, help="default: all 28,709")
    parser.add_argument("--epochs-head", type=int, default=10)
    parser.add_argument("--epochs-block", type=int, default=6)
    parser.add_argument("--block-learning-rate", type=float, default=1e-4)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--uncached", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def say(message):
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {message}", flush=True)

    data = load_fer2013(args.data, splits=["Training", "PublicTest"])
    images, target = data.train.images, data.train.target
    if args.train_images is not None and args.train_images < len(target):
        images, _, target, _ = train_test_split(
            images, target, train_size=args.train_images, stratify=target, random_state=0
        )
    X_fit, X_hold, y_fit, y_hold = train_test_split(
        images, target, test_size=0.1, stratify=target, random_state=0
    )
    say(f"{len(y_fit)} training and {len(y_hold)} held-out images")
    runs = [(blocks, True) for blocks in args.blocks] + [(1, False)] * args.uncached
    for blocks, cached in runs:
        clf = TransferCNNClassifier(
            "mobilenet_vggface2",
            weights=args.weights,
            input_size=224,
            head=(1024, 1024),
            short_epochs=args.epochs_head,
            long_epochs=args.epochs_block if blocks else 0,
            long_learning_rate=args.block_learning_rate,
            unfreeze_blocks=blocks,
            cache_features=cached,
            patience=4,
            random_state=0,
            verbose=1,
        )
        tick = time.perf_counter()
        clf.fit(X_fit, y_fit, validation_data=(X_hold, y_hold))
        minutes = (time.perf_counter() - tick) / 60
        hold = np.mean(clf.predict_proba_cached(X_hold).argmax(axis=1) == y_hold)
        test = np.mean(
            clf.predict_proba_cached(data.public_test.images).argmax(axis=1)
            == data.public_test.target
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        say(
            f"unfreeze_blocks={blocks}{'' if cached else ', uncached'}: fit {minutes:.1f} min "
            f"({clf.history_['phase'].count('short')} + {clf.history_['phase'].count('long')} "
            f"epochs), held-out {hold:.4f}, PublicTest {test:.4f}, peak RSS so far "
            f"{peak:.2f} GiB; held-out per epoch "
            f"{[round(v, 4) for v in clf.history_['val_accuracy']]}"
        )


if __name__ == "__main__":
    main()
