"""Save and load fitted skfer classifiers without pickle.

One ``.skfer`` file is a zip archive holding the Keras model in its ``.keras`` format (loaded
with ``safe_mode=True``, which refuses to run embedded code) and ``estimator.json`` with the
estimator's parameters, classes and history. Unpickling, by contrast, can run arbitrary code:
share models as ``.skfer`` files, not as pickles.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

from .errors import DataFileError

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
_MODEL = "model.keras"
_STATE = "estimator.json"
_FITTED = ("n_features_in_", "image_shape_", "history_", "long_phase_start_")
# Pickle protocol 2+ and the compressions joblib.dump writes (zlib, gzip, bz2, xz, lz4).
_PICKLE_SIGNATURES = (
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


def _version() -> str:
    from . import __version__

    return __version__


def _json_label(value):
    return value.item() if isinstance(value, np.generic) else value


def _encode_param(value):
    """A parameter as JSON: paths and dicts are tagged so that :func:`_decode_param` gives
    back a ``Path`` and a dict with its original (non-string) keys."""
    if isinstance(value, os.PathLike):
        return {"path": os.fspath(value)}
    if isinstance(value, dict):
        return {"dict": [[_json_label(key), _json_label(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return list(value)
    return _json_label(value)


def _decode_param(value):
    if isinstance(value, dict) and "path" in value:
        return Path(value["path"])
    if isinstance(value, dict) and "dict" in value:
        return {key: item for key, item in value["dict"]}
    return value


def save(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted ``TransferCNNClassifier`` to ``path`` (a ``.skfer`` zip file).

    Raises
    ------
    ValueError
        If the estimator is not fitted or a parameter cannot be written as JSON (a
        ``RandomState`` instance, say; pass an int instead).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "model_")
    params = {name: _encode_param(value) for name, value in estimator.get_params().items()}
    try:
        state = {
            "format": FORMAT_VERSION,
            "skfer_version": _version(),
            "class": type(estimator).__name__,
            "params": json.loads(json.dumps(params)),
            "classes": [_json_label(label) for label in estimator.classes_],
            "classes_dtype": estimator.classes_.dtype.str,
            "flat_input": bool(estimator._flat_input),
            **{name: getattr(estimator, name) for name in _FITTED},
        }
        text = json.dumps(state, default=_json_label)
    except TypeError as error:
        raise ValueError(
            f"Cannot save: a parameter is not JSON-serialisable ({error}); use plain values "
            f"(an int random_state, a string or path for weights). Received: {params}"
        ) from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        model_path = Path(directory) / _MODEL
        estimator.model_.save(model_path)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(_STATE, text)
            archive.write(model_path, _MODEL)
    return path


def _not_a_model(path: Path, names=(), error=None) -> DataFileError:
    """The error for a file that is not an skfer model: say what it is and what to do.

    ``names`` are the members of a zip file; ``error`` is why it did not open as one.
    """
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(_PICKLE_SIGNATURES):  # checked first: a pickled model holds a zip
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
            f"{str(path)!r} is a zip file but not an skfer model (it lacks {_STATE} or "
            f"{_MODEL}); save models with clf.save(path). Received: {sorted(names)[:5]}"
        )
    return DataFileError(
        f"{str(path)!r} is truncated or not an skfer model file ({error}); copy or save "
        f"it again. Received: {path.stat().st_size} bytes"
    )


def load(path: str | os.PathLike):
    """Load a classifier written by :func:`save` (or ``TransferCNNClassifier.save``).

    The Keras model loads with ``safe_mode=True``. A truncated file, a file that is not a
    ``.skfer`` archive (a Keras ``.keras`` file, a pickle or joblib file, ...) raises
    :class:`~skfer.errors.DataFileError` (a ``ValueError``) naming the problem, as does one
    written by an skfer with another file format.
    """
    from .classifier import TransferCNNClassifier

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No skfer model at {str(path)!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {_STATE, _MODEL} <= names:
                raise _not_a_model(path, names)
            state = json.loads(archive.read(_STATE))
            with tempfile.TemporaryDirectory() as directory:
                archive.extract(_MODEL, directory)
                model = keras.models.load_model(Path(directory) / _MODEL, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        raise _not_a_model(path, error=error) from error
    if state.get("format") != FORMAT_VERSION or state.get("class") != "TransferCNNClassifier":
        raise DataFileError(
            f"{str(path)!r} was written by skfer {state.get('skfer_version')!r} in file format "
            f"{state.get('format')!r}; this skfer ({_version()}) reads format {FORMAT_VERSION}. "
            f"Load it with the skfer version that wrote it, or retrain. "
            f"Received: format={state.get('format')!r}, class={state.get('class')!r}"
        )
    params = {name: _decode_param(value) for name, value in state["params"].items()}
    params["head"] = tuple(params["head"])
    estimator = TransferCNNClassifier(**params)
    estimator.classes_ = np.asarray(state["classes"], dtype=np.dtype(state["classes_dtype"]))
    estimator.n_features_in_ = state["n_features_in_"]
    estimator.image_shape_ = tuple(state["image_shape_"])
    estimator.history_ = state["history_"]
    estimator.long_phase_start_ = state["long_phase_start_"]
    estimator._flat_input = state["flat_input"]
    estimator.model_ = model
    return estimator
