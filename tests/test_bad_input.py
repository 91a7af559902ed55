"""Bad input gets a clear error naming the problem and the fix, never a TensorFlow traceback.

Each case: what is wrong, the call, the exception type, a pattern for the problem and one for
the fix (or the valid choices) in the message.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from weightfiles import write_keras2_weights

from skfer import OneVsAllExperts, TransferCNNClassifier, get_backbone
from skfer.backbones import WeightsFileError
from skfer.datasets import load_fer2013
from skfer.ensemble import make_fer_ensemble

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 16, 16)).astype(np.uint8)
LABELS = np.arange(40) % 2
GOOD_ROW = "3," + " ".join(["128"] * 2304) + ",Training"


@pytest.fixture
def fitted():
    from conftest import TINY

    return TransferCNNClassifier(**TINY).fit(IMAGES, LABELS)


def _fit(X=IMAGES, y=LABELS, **params):
    from conftest import TINY

    return lambda: TransferCNNClassifier(**{**TINY, **params}).fit(X, y)


def _csv(tmp_path, *rows, header="emotion,pixels,Usage"):
    path = tmp_path / "fer.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join([header, *rows]) + "\n")
    return lambda: load_fer2013(path)


def _weights(tmp_path, kind):
    spec = get_backbone("mobilenet")
    path = tmp_path / "weights.h5"
    if kind == "missing":
        path = tmp_path / "absent.h5"
    elif kind == "not hdf5":
        path.write_bytes(b"<html>404 Not Found</html>")
    elif kind == "wrong shapes":
        write_keras2_weights(spec.build(32), path, reshape_layer="conv_pw_5")
    elif kind == "hash mismatch":
        path = tmp_path / spec.weights["imagenet"].file_name
        write_keras2_weights(spec.build(32), path)
    return _fit(backbone="mobilenet", weights=path, input_size=32)


def _folder(tmp_path, kind):
    import tensorflow as tf

    folder = tmp_path / "faces"
    (folder / "train" / ("smiling" if kind == "unknown class" else "happy")).mkdir(parents=True)
    image = folder / "train" / ("smiling" if kind == "unknown class" else "happy") / "1.png"
    if kind == "unreadable":
        image.write_bytes(b"\x89PNG garbage")
    else:
        image.write_bytes(tf.io.encode_png(np.zeros((48, 48, 1), np.uint8)).numpy())
    return lambda: load_fer2013(folder)


CASES = {
    # images and labels given to fit
    "wrong ndim": (lambda t: _fit(X=np.zeros((2, 3, 16, 16, 1))), ValueError, "must be images", r"\(n, H, W\)"),
    "one-dimensional X": (lambda t: _fit(X=np.zeros(40)), ValueError, "Expected 2D array", "Reshape your data"),
    "non-square flat rows": (lambda t: _fit(X=np.zeros((40, 10))), ValueError, "not a square image", r"pass images as \(n, H, W\)"),
    "NaN": (lambda t: _fit(X=np.where(IMAGES == 0, np.nan, IMAGES)), ValueError, "contains NaN", "NaN"),
    "infinity": (lambda t: _fit(X=np.where(IMAGES == 0, np.inf, IMAGES)), ValueError, "infinity", "infinity"),
    "strings for pixels": (lambda t: _fit(X=IMAGES.astype(str)), ValueError, "not compatible with arrays of bytes/strings", "Convert your data to numeric"),
    "integers outside 0..255": (lambda t: _fit(X=IMAGES.astype(int) * 4), ValueError, "outside 0..255", "rescale them or pass floats"),
    "X/y length mismatch": (lambda t: _fit(y=LABELS[:-3]), ValueError, "40 images but y holds 37 labels", "one label per image"),
    "a single class": (lambda t: _fit(y=np.zeros(40)), ValueError, "at least 2 classes", "only one class"),
    "an empty array": (lambda t: _fit(X=np.zeros((0, 16, 16)), y=np.zeros(0)), ValueError, "0 sample", "minimum of 1"),
    "too few of a class for the validation split": (lambda t: _fit(y=np.r_[np.zeros(39), 1], validation_fraction=0.1), ValueError, "Too few samples", "validation_fraction=None"),
    "continuous labels": (lambda t: _fit(y=np.linspace(0, 1, 40)), ValueError, "Unknown label type", "continuous"),
    "unknown backbone": (lambda t: _fit(backbone="vgg17"), ValueError, "Unknown backbone", "choose one of"),
    "input size below the backbone's minimum": (lambda t: _fit(backbone="inception_v3", weights=None, input_size=32), ValueError, "at least 75 pixels", "larger input_size"),
    "unknown optimizer": (lambda t: _fit(optimizer="adagrad"), ValueError, "optimizer must be one of", "adam"),
    "negative epochs": (lambda t: _fit(long_epochs=-1), ValueError, "long_epochs must be an integer >= 0", ">= 0"),
    "class_weight naming an absent label": (lambda t: _fit(class_weight={7: 2.0}), ValueError, "not in y", "class_weight"),
    "negative unfreeze_blocks": (lambda t: _fit(unfreeze_blocks=-1), ValueError, "unfreeze_blocks must be None or an integer >= 0", "Received: unfreeze_blocks=-1"),
    "zero batch_size": (lambda t: _fit(batch_size=0), ValueError, "batch_size must be an integer >= 1", "Received: batch_size=0"),
    "zero learning rate": (lambda t: _fit(long_learning_rate=0.0), ValueError, "long_learning_rate must be a number > 0", "Received"),
    "negative patience": (lambda t: _fit(patience=-1), ValueError, "patience must be None or an integer >= 0", "Received: patience=-1"),
    "input_size below the tiny backbone's minimum": (lambda t: _fit(input_size=4), ValueError, "at least 8 pixels", "larger input_size"),
    "negative verbose": (lambda t: _fit(verbose=-1), ValueError, "verbose must be an integer >= 0", "Received: verbose=-1"),
    "unknown class_weight string": (lambda t: _fit(class_weight="auto"), ValueError, "class_weight must be None, one of \\('balanced',\\) or a dict", "Received: class_weight='auto'"),
    "a head layer of 0 units": (lambda t: _fit(head=(0,)), ValueError, "head must be a list or tuple whose items are each an integer >= 1", "Received: head=\\(0,\\)"),
    "dropout of 1": (lambda t: _fit(dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\)", "Received: dropout=1.0"),
    "validation labels absent from y": (lambda t: lambda: _fit()().fit(IMAGES, LABELS, validation_data=(IMAGES, LABELS + 5)), ValueError, "labels absent from y", "same classes"),
    # weight files
    "weights path missing": (lambda t: _weights(t, "missing"), WeightsFileError, "existing weight file", "None"),
    "weights not HDF5": (lambda t: _weights(t, "not hdf5"), WeightsFileError, "not an HDF5 file", "pass a Keras .h5"),
    "weights with wrong layer shapes": (lambda t: _weights(t, "wrong shapes"), WeightsFileError, "conv_pw_5.*has shapes", "same architecture"),
    "weights hash mismatch": (lambda t: _weights(t, "hash mismatch"), WeightsFileError, "differs from the published", "download it again"),
    # the FER2013 CSV
    "CSV short pixel row": (lambda t: _csv(t, GOOD_ROW, "3,1 2 3,Training"), ValueError, "line 3.*3 pixel values; expected 2304", "Fix or remove the row"),
    "CSV non-numeric pixel": (lambda t: _csv(t, GOOD_ROW.replace(" 128", " x", 1)), ValueError, "line 2.*not a number", "Fix or remove the row"),
    "CSV emotion outside 0-6": (lambda t: _csv(t, "9" + GOOD_ROW[1:]), ValueError, "line 2.*emotion must be an integer label 0..6", "Fix or remove the row"),
    "CSV unknown Usage": (lambda t: _csv(t, GOOD_ROW.replace("Training", "Validation")), ValueError, "line 2.*unknown Usage", "Fix or"),
    "CSV missing column": (lambda t: _csv(t, "3,1 2", header="emotion,pixels"), ValueError, "Usage", "emotion,pixels,Usage"),
    # image folders
    "folder with an unknown class name": (lambda t: _folder(t, "unknown class"), ValueError, "Unknown class folder", "Rename or remove it"),
    "unreadable image": (lambda t: _folder(t, "unreadable"), ValueError, "Cannot decode image", "Replace or remove"),
    # experts and the ensemble
    "experts for a class not in y": (lambda t: lambda: OneVsAllExperts(classes=[5]).fit(IMAGES, LABELS), ValueError, "subset of the labels", "Received: classes=\\[5\\]"),
    "cross-validated stack without classes": (lambda t: lambda: make_fer_ensemble(TransferCNNClassifier(), OneVsAllExperts(), prefit=False), ValueError, "With prefit=False", "classes="),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_error(case, tmp_path):
    make_call, error_type, problem, fix = CASES[case]
    with pytest.raises(error_type) as caught:
        make_call(tmp_path)()
    message = str(caught.value)
    assert caught.type.__module__.split(".")[0] in ("skfer", "builtins", "sklearn"), caught.type
    import re

    assert re.search(problem, message, re.S), message
    assert re.search(fix, message, re.S), message


@pytest.mark.parametrize("params", [{"unfreeze_blocks": -1}, {"class_weight": {7: 2.0}}])
def test_bad_parameters_fail_before_any_work(params, monkeypatch):
    import skfer.classifier

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the parameters were checked")

    monkeypatch.setattr(skfer.classifier, "build_transfer_model", no_build)
    with pytest.raises(ValueError):
        _fit(**params)()


def test_predict_before_fit_says_to_fit():
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        TransferCNNClassifier().predict(IMAGES)


def test_predict_on_images_that_cannot_be_matched(fitted):
    with pytest.raises(ValueError, match="3-channel images but the model was fitted on 1"):
        fitted.predict(np.repeat(IMAGES[..., None], 3, axis=-1))
    flat = fitted.fit(IMAGES.reshape(40, -1), LABELS)
    with pytest.raises(
        ValueError, match="X has 100 features, but TransferCNNClassifier is expecting 256"
    ):
        flat.predict(np.zeros((2, 100)))


def test_nothing_is_silently_dropped(fitted):
    # Floats are kept as they are (not rounded to uint8); every row is predicted.
    floats = IMAGES.astype(np.float64) + 0.5
    assert fitted.predict_proba(floats).shape == (40, 2)
