"""FER+: the face-trained MobileNet 1.0, frozen at 224 px, trained on majority labels and on
the vote distributions (soft targets), on the same held-out split and cached features.

    python benchmarks/bench_ferplus.py [--size 224] [--epochs 30] [--seed 0]

Prints held-out accuracy (10% of FER+ Training, stratified; used for early stopping) for each
kind of target, and the PublicTest (FER+ "valid") majority-label accuracy of both. The
backbone's features are computed once: the second fit and the predictions hit the cache.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skfer import TransferCNNClassifier  # noqa: E402
from skfer.ferplus import load_ferplus  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument("--labels", default=str(SHARED / "data/ferplus/fer2013new.csv"))
    parser.add_argument(
        "--weights", default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json")
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"{datetime.date.today()} {platform.platform()} {os.cpu_count()} CPUs", flush=True)
    data = load_ferplus(args.data, args.labels)
    train, test = data.train, data.public_test
    rows = np.arange(len(train.target))
    fit_rows, hold_rows = train_test_split(
        rows, test_size=0.1, stratify=train.target, random_state=args.seed
    )
    print(f"FER+: {len(fit_rows)} training, {len(hold_rows)} held-out, {len(test.target)} "
          f"PublicTest images; excluded: {data.excluded_counts}", flush=True)  # fmt: skip
    params = dict(backbone="mobilenet_vggface2", weights=args.weights, input_size=args.size,
                  short_epochs=args.epochs, long_epochs=0, batch_size=64, patience=5,
                  random_state=args.seed, verbose=0)  # fmt: skip
    validation = (train.images[hold_rows], train.target[hold_rows])
    for kind in ("majority", "soft"):
        start = time.perf_counter()
        distribution = train.distribution[fit_rows] if kind == "soft" else None
        clf = TransferCNNClassifier(**params).fit(
            train.images[fit_rows], train.target[fit_rows],
            validation_data=validation, target_distribution=distribution,
        )  # fmt: skip
        held_out = clf.score(*validation)
        public = clf.score(test.images, test.target)
        print(f"{kind:8s} targets: held-out {held_out:.4f}, PublicTest (FER+ majority) "
              f"{public:.4f}, {len(clf.history_['phase'])} epochs, "
              f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
