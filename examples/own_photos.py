"""Train an expression classifier on a folder of your own labelled photos.

    python examples/own_photos.py photos/ [--crop-faces] [--weights faceres.json] [--smoke]

``photos/`` holds one subfolder per class, named after it (``photos/happy/*.jpg``,
``photos/sad/*.png``, ...), photos of any size, colour or gray. A stratified quarter is held
out as a test set; a scikit-learn ``Pipeline`` (a per-photo contrast stretch, for photos of
uneven exposure, then the face-trained MobileNet 1.0 frozen at 224 px with a new head) is fitted
on the rest and scored on it. A few hundred photos train in a few minutes on a CPU.
``--smoke`` shrinks the sizes (32 px, one epoch) to check the script runs in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skfer import TransferCNNClassifier
from skfer.datasets import load_image_folder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def stretch_contrast(images: np.ndarray) -> np.ndarray:
    """Stretch each image's pixel range to 0..255 (the same step at fit and predict time)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    return ((flat - low) * (255.0 / np.maximum(high - low, 1.0))).reshape(images.shape)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="a folder with one subfolder of photos per class")
    parser.add_argument(
        "--weights",
        default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json"),
        help="the face-trained MobileNet's weight file (default: %(default)s)",
    )
    parser.add_argument(
        "--crop-faces", action="store_true", help="crop each photo to its largest face first"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = parser.parse_args(argv)

    size, epochs, batch_size = (32, 1, 8) if args.smoke else (224, 10, 64)
    data = load_image_folder(args.folder, size=size, crop_faces=args.crop_faces)
    print(data.DESCR)
    X_train, X_test, y_train, y_test = train_test_split(
        data.images,
        np.asarray(data.class_names)[data.target],
        test_size=0.25,
        stratify=data.target,
        random_state=0,
    )
    pipeline = Pipeline(
        [
            ("contrast", FunctionTransformer(stretch_contrast)),
            (
                "cnn",
                TransferCNNClassifier(
                    "mobilenet_vggface2", weights=args.weights, input_size=size,
                    short_epochs=epochs, long_epochs=0, batch_size=batch_size, random_state=0,
                    verbose=0,
                ),
            ),
        ]
    )  # fmt: skip
    pipeline.fit(X_train, y_train)
    print(f"test accuracy: {pipeline.score(X_test, y_test):.4f} ({len(y_test)} photos)")
    print(classification_report(y_test, pipeline.predict(X_test), zero_division=0))


if __name__ == "__main__":
    main()
