"""GridSearchCV over TransferCNNClassifier parameters inside a Pipeline, on a FER2013 subset.

    python examples/grid_search.py [--per-class 50]

Shows the scikit-learn integration: the CNN is an ordinary step of a Pipeline, its parameters
are searched with the ``cnn__`` prefix, the folds are stratified (it is a classifier), and the
best model is refitted and scored on PublicTest. Runs in a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skfer import TransferCNNClassifier
from skfer.datasets import load_fer2013

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def equalize(images: np.ndarray) -> np.ndarray:
    """Per-image contrast stretch to 0..255 (a preprocessing step to search over)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    stretched = (flat - low) * (255.0 / np.maximum(high - low, 1.0))
    return stretched.reshape(images.shape)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument(
        "--weights",
        default=str(
            SHARED / "weights/mobilenet_v1_0.25_imagenet_notop/mobilenet_2_5_224_tf_no_top.h5"
        ),
    )
    parser.add_argument("--per-class", type=int, default=50)
    args = parser.parse_args(argv)

    data = load_fer2013(args.data)
    rng = np.random.default_rng(0)
    index = np.concatenate(
        [
            rng.choice(np.flatnonzero(data.train.target == k), args.per_class, False)
            for k in range(7)
        ]
    )
    X, y = data.train.images[index], data.train.target[index]

    pipeline = Pipeline(
        [
            ("contrast", FunctionTransformer(equalize)),
            (
                "cnn",
                TransferCNNClassifier(
                    "mobilenet", weights=args.weights, input_size=48, short_epochs=3,
                    long_epochs=2, batch_size=32, validation_fraction=None, random_state=0,
                    verbose=0,
                ),
            ),
        ]
    )  # fmt: skip
    grid = {
        "contrast": [FunctionTransformer(equalize), "passthrough"],
        "cnn__head": [(256,), (1024, 1024)],
        "cnn__long_learning_rate": [1e-4, 3e-4],
    }
    search = GridSearchCV(pipeline, grid, cv=2, verbose=1).fit(X, y)
    for params, score in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        print(f"{score:.4f}  {params}")
    print("best:", search.best_params_)
    test = data.public_test
    print(f"best pipeline, PublicTest accuracy: {search.score(test.images, test.target):.4f}")


if __name__ == "__main__":
    main()
