"""Which stacking MLP: the ensemble's final estimator, compared on held-out data.

    python benchmarks/bench_stacker.py [--dataset fer2013|ferplus] [--members FILE.npz]

Trains the cpu preset's best base model (the face-trained MobileNet 1.0 frozen at 224 px; on
FER+ on the vote distributions, which won on held-out data) and its one-vs-all experts on 90%
of Training, as ``skfer reproduce --preset cpu`` does, and saves the members' held-out and
PublicTest probabilities to ``--members`` (reused when the file exists). Then, for each
stacker variant, prints the 5-fold cross-validated accuracy on the held-out 10% (the number
that chooses) with the base model alone and with every expert, and the PublicTest accuracy
of the variant fitted on all of the held-out part (reported, never used to choose). The
base model's own argmax is the floor a stacker must beat.
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
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split  # noqa: E402

from skfer import OneVsAllExperts, TransferCNNClassifier  # noqa: E402
from skfer.ensemble import make_stacker  # noqa: E402
from skfer.experts import spread_score  # noqa: E402
from skfer.ferplus import load_dataset  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def members(args) -> dict:
    """Held-out and PublicTest probabilities of the base model and of each expert."""
    data = load_dataset(args.dataset, args.data, args.labels, splits=["Training", "PublicTest"])
    train, test = data.train, data.public_test
    rows = np.arange(len(train.target))
    fit_rows, hold_rows = train_test_split(
        rows, test_size=0.1, stratify=train.target, random_state=0
    )
    params = dict(backbone="mobilenet_vggface2", weights=args.weights, input_size=224,
                  short_epochs=30, long_epochs=0, batch_size=64, patience=5, random_state=0,
                  verbose=0)  # fmt: skip
    X, y = train.images[fit_rows], train.target[fit_rows]
    validation = (train.images[hold_rows], train.target[hold_rows])
    soft = train.distribution[fit_rows] if args.dataset == "ferplus" else None
    start = time.perf_counter()
    base = TransferCNNClassifier(**params).fit(
        X, y, validation_data=validation, target_distribution=soft
    )
    experts = OneVsAllExperts(TransferCNNClassifier(**{**params, "short_epochs": 10})).fit(
        X, y, validation_data=validation
    )
    print(f"base model and {len(experts.classes_)} experts: "
          f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)  # fmt: skip
    columns = {}
    for split, images in (("hold", validation[0]), ("test", test.images)):
        columns[f"{split}_base"] = base.predict_proba_cached(images)
        columns[f"{split}_experts"] = np.stack(
            [experts.expert(k).score_positive(images) for k in experts.classes_], axis=1
        )
    return dict(columns, hold_y=validation[1], test_y=test.target)


def expert_columns(scores: np.ndarray) -> np.ndarray:
    """What the experts give the stack: each expert's ``ClassExpert.predict_proba`` columns,
    rebuilt from its scores (one column of ``scores`` per class), side by side."""
    n_classes = scores.shape[1]
    return np.column_stack([spread_score(scores[:, k], k, n_classes) for k in range(n_classes)])


def variants(seed: int) -> dict:
    """Stacker variants by name: each a function of nothing that returns an unfitted model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    def log_inputs(model):
        clip = FunctionTransformer(lambda p: np.log(np.clip(p, 1e-6, 1.0)))
        return make_pipeline(clip, StandardScaler(), model)

    def mlp(**kwargs):
        return MLPClassifier((64, 32), max_iter=1000, random_state=seed, **kwargs)

    return {
        "MLP (64, 32) on probabilities, early stopping (skfer before 2026-11-27)": lambda: mlp(
            early_stopping=True, n_iter_no_change=20
        ),
        "MLP (64, 32) on probabilities, no early stopping (make_stacker)": lambda: make_stacker(
            (64, 32), random_state=seed
        ),
        "MLP (64, 32) on log-probabilities, standardised, early stopping": lambda: log_inputs(
            mlp(early_stopping=True, n_iter_no_change=20)
        ),
        "MLP (64, 32) on log-probabilities, standardised, alpha 1e-2": lambda: log_inputs(
            mlp(alpha=1e-2)
        ),
        "MLP (64, 32) on log-probabilities, standardised, alpha 1": lambda: log_inputs(
            mlp(alpha=1.0)
        ),
        "logistic regression on log-probabilities (reference)": lambda: log_inputs(
            LogisticRegression(max_iter=2000)
        ),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("fer2013", "ferplus"), default="fer2013")
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument("--labels", default=str(SHARED / "data/ferplus/fer2013new.csv"))
    parser.add_argument(
        "--weights", default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json")
    )
    parser.add_argument("--members", type=Path, help="npz of member outputs (written, reused)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"{datetime.date.today()} {platform.platform()} {os.cpu_count()} CPUs, "
          f"dataset {args.dataset}", flush=True)  # fmt: skip
    if args.members is not None and args.members.exists():
        outputs = dict(np.load(args.members))
    else:
        outputs = members(args)
        if args.members is not None:
            np.savez(args.members, **outputs)
    hold_y, test_y = outputs["hold_y"], outputs["test_y"]
    print(f"base model argmax: held-out {np.mean(outputs['hold_base'].argmax(1) == hold_y):.4f} "
          f"(early stopping saw it), PublicTest "
          f"{np.mean(outputs['test_base'].argmax(1) == test_y):.4f}")  # fmt: skip
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    for name, make in variants(args.seed).items():
        for members_used in ("base", "base + all experts"):
            hold, test = (
                outputs[f"{split}_base"]
                if members_used == "base"
                else np.column_stack(
                    [outputs[f"{split}_base"], expert_columns(outputs[f"{split}_experts"])]
                )
                for split in ("hold", "test")
            )
            start = time.perf_counter()
            cv = cross_val_score(make(), hold, hold_y, cv=folds).mean()
            test = make().fit(hold, hold_y).score(test, test_y)
            print(f"{name}, {members_used}: held-out 5-fold {cv:.4f}, PublicTest {test:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
