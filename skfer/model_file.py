"""The file format of one fitted skfer classifier, and the JSON encoding of its state.

A ``.skfer`` file is a zip archive: ``estimator.json`` (the parameters, classes and history)
and the Keras model as ``model.keras`` (loaded with ``safe_mode=True``). This module writes
it and knows the format; it builds no estimator, so that :mod:`skfer.classifier` (whose
``save`` writes through it) and :mod:`skfer.persistence` (which reads files back into
estimators, stacked ensembles included) both build on it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import __version__
from .errors import DataFileError

__all__ = [
    "FITTED",
    "FORMAT_VERSION",
    "MODEL",
    "STATE",
    "decode_param",
    "decoded_params",
    "encode_param",
    "json_label",
    "labels_from_json",
    "labels_json",
    "not_a_model",
    "params_json",
    "write_classifier",
]

FORMAT_VERSION = 1
MODEL = "model.keras"
STATE = "estimator.json"
FITTED = (
    "n_features_in_",
    "image_shape_",
    "history_",
    "long_phase_start_",
    "weight_average_",
)
# Pickle protocol 2+ and the compressions joblib.dump writes (zlib, gzip, bz2, xz, lz4).
PICKLE_SIGNATURES = (
    b"\x80",
    b"ZF",
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"\x04\x22\x4d\x18",
)


def json_label(value):
    """``value`` as a plain Python value (numpy scalars as their ``item()``)."""
    return value.item() if isinstance(value, np.generic) else value


def encode_param(value):
    """A parameter as JSON: paths and dicts are tagged so that :func:`decode_param` gives
    back a ``Path`` and a dict with its original (non-string) keys."""
    if isinstance(value, os.PathLike):
        return {"path": os.fspath(value)}
    if isinstance(value, dict):
        return {"dict": [[json_label(key), json_label(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return list(value)
    return json_label(value)


def decode_param(value):
    """The parameter that :func:`encode_param` wrote as ``value``."""
    if isinstance(value, dict) and "path" in value:
        return Path(value["path"])
    if isinstance(value, dict) and "dict" in value:
        return {key: item for key, item in value["dict"]}
    return value


def params_json(params: dict) -> dict:
    """``params`` as JSON values (:func:`encode_param`); ValueError if one cannot be."""
    encoded = {name: encode_param(value) for name, value in params.items()}
    try:
        return json.loads(json.dumps(encoded))
    except TypeError as error:
        raise ValueError(
            f"Cannot save: a parameter is not JSON-serialisable ({error}); use plain values "
            f"(an int random_state or cv, a string or path for weights). Received: {params}"
        ) from error


def decoded_params(params: dict) -> dict:
    return {name: decode_param(value) for name, value in params.items()}


def labels_json(labels: np.ndarray) -> dict:
    """Labels as ``{"values": [...], "dtype": ...}``, read back by :func:`labels_from_json`."""
    return {"values": [json_label(label) for label in labels], "dtype": labels.dtype.str}


def labels_from_json(state: dict) -> np.ndarray:
    return np.asarray(state["values"], dtype=np.dtype(state["dtype"]))


def write_classifier(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted ``TransferCNNClassifier`` to ``path``: ``estimator.json`` (parameters,
    classes, history) and its Keras model as ``model.keras``, in one zip file.

    Raises
    ------
    ValueError
        If the estimator is not fitted or a parameter cannot be written as JSON (a
        ``RandomState`` instance, say; pass an int instead).
    """
    check_is_fitted(estimator, "model_")
    state = {
        "format": FORMAT_VERSION,
        "skfer_version": __version__,
        "class": type(estimator).__name__,
        "params": params_json(estimator.get_params()),
        "classes": [json_label(label) for label in estimator.classes_],
        "classes_dtype": estimator.classes_.dtype.str,
        "flat_input": bool(estimator._flat_input),
        **{name: getattr(estimator, name) for name in FITTED},
    }
    text = json.dumps(state, default=json_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        model_path = Path(directory) / MODEL
        estimator.model_.save(model_path)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(STATE, text)
            archive.write(model_path, MODEL)
    return path


def not_a_model(path: Path, names=(), error=None) -> DataFileError:
    """The error for a file that is not an skfer model: say what it is and what to do.

    ``names`` are the members of a zip file; ``error`` is why it did not open as one.
    """
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(PICKLE_SIGNATURES):  # checked first: a pickled model holds a zip
        return DataFileError(
            f"{str(path)!r} is a pickle or joblib file, not an skfer model; skfer never "
            "unpickles (it can run arbitrary code). If you trust the file, load it with "
            "joblib.load(path) and save it with clf.save('model.skfer'). "
            f"Received: first bytes {head!r}"
        )
    if {"config.json", "model.weights.h5"} <= set(names):
        return DataFileError(
            f"{str(path)!r} is a Keras model file (.keras), not an skfer model; load it with "
            "keras.models.load_model(path), or save a fitted classifier with "
            f"clf.save('model.skfer'). Received: {sorted(names)[:5]}"
        )
    if error is None:
        return DataFileError(
            f"{str(path)!r} is a zip file but not an skfer model (it lacks {STATE} or "
            f"{MODEL}); save models with clf.save(path). Received: {sorted(names)[:5]}"
        )
    return DataFileError(
        f"{str(path)!r} is truncated or not an skfer model file ({error}); copy or save "
        f"it again. Received: {path.stat().st_size} bytes"
    )
