"""Does fine-tuning the face-trained MobileNet's last block pay on the CPU?

    python benchmarks/bench_top_block.py [--epochs-head 15] [--epochs-block 8]

The cpu preset trains only a head on the frozen face-trained MobileNet 1.0 (224 px). On the
GPU, fine-tuning the whole backbone scored 4.9 points more. This caches the output of block
12 (7x7x1024 per image, float16) once, then compares on the same cache, same split as
``skfer reproduce`` (10% of Training held out, seed 0):
(a) the head alone on the frozen block 13 (what the cpu preset does),
(b) the same head, then block 13 and the head together at a lower learning rate.
Held-out accuracy chooses; PublicTest is reported.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skfer import get_backbone  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402
from skfer.layers import FrozenStatisticsBackbone  # noqa: E402
from skfer.model import BACKBONE_LAYER, build_transfer_model  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPLIT_AT = "conv_pw_12_relu"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument(
        "--weights", default=str(SHARED / "weights/hse_faceres_vggface2/faceres.json")
    )
    parser.add_argument("--epochs-head", type=int, default=15)
    parser.add_argument("--epochs-block", type=int, default=8)
    parser.add_argument("--block-learning-rate", type=float, default=1e-4)
    parser.add_argument("--cache", type=Path, default=Path("runs/top_block_cache.npz"))
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def say(message):
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {message}", flush=True)

    data = load_fer2013(args.data, splits=["Training", "PublicTest"])
    rows = np.arange(len(data.train.target))
    fit_rows, hold_rows = train_test_split(
        rows, test_size=0.1, stratify=data.train.target, random_state=0
    )
    y = {"fit": data.train.target[fit_rows], "hold": data.train.target[hold_rows],
         "test": data.public_test.target}  # fmt: skip
    model = build_transfer_model(get_backbone("mobilenet_vggface2"), channels=1, n_classes=7,
                                 input_size=224, weights=args.weights)  # fmt: skip
    backbone = model.get_layer(BACKBONE_LAYER).backbone
    if args.cache.exists():
        maps = dict(np.load(args.cache))
        say(f"block-12 maps read from {args.cache}")
    else:
        lower = keras.Model(backbone.input, backbone.get_layer(SPLIT_AT).output)
        prefix = keras.Model(model.input, lower(model.get_layer(BACKBONE_LAYER).input))
        images = {"fit": data.train.images[fit_rows], "hold": data.train.images[hold_rows],
                  "test": data.public_test.images}  # fmt: skip
        maps = {}
        for split, x in images.items():
            maps[split] = np.concatenate([
                prefix.predict(x[begin : begin + 2048, ..., None], batch_size=64, verbose=0)
                .astype(np.float16)
                for begin in range(0, len(x), 2048)
            ])  # fmt: skip
            say(f"block-12 maps of {split}: {maps[split].shape}")
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, **maps)

    keras.utils.set_random_seed(0)
    upper = keras.Model(backbone.get_layer(SPLIT_AT).output, backbone.output)
    inputs = keras.Input(maps["fit"].shape[1:])
    # BatchNorm stays in inference mode while block 13 trains, as in skfer's models.
    x = FrozenStatisticsBackbone(upper)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    for units in (1024, 1024):
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
    top = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))

    def phase(name, epochs, learning_rate, block_trainable):
        upper.trainable = block_trainable
        top.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])  # fmt: skip
        stop = keras.callbacks.EarlyStopping("val_accuracy", patience=4, mode="max",
                                             restore_best_weights=True)  # fmt: skip
        tick = time.perf_counter()
        history = top.fit(maps["fit"], y["fit"], batch_size=64, epochs=epochs, verbose=0,
                          validation_data=(maps["hold"], y["hold"]), callbacks=[stop])  # fmt: skip
        per_epoch = (time.perf_counter() - tick) / len(history.epoch)
        hold = top.evaluate(maps["hold"], y["hold"], verbose=0)[1]
        test = top.evaluate(maps["test"], y["test"], verbose=0)[1]
        say(f"{name}: {len(history.epoch)} epochs ({per_epoch:.0f} s each), held-out "
            f"{hold:.4f}, PublicTest {test:.4f}; held-out per epoch "
            f"{[round(v, 4) for v in history.history['val_accuracy']]}")  # fmt: skip

    phase("(a) head on the frozen backbone", args.epochs_head, 1e-3, False)
    phase(f"(b) then block 13 + head at learning rate {args.block_learning_rate:g}",
          args.epochs_block, args.block_learning_rate, True)  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    say(f"peak RSS {peak:.1f} GiB")


if __name__ == "__main__":
    main()
