"""Pickle-free save/load, embeddings through transform."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
from sklearn.pipeline import Pipeline, make_union
from sklearn.svm import SVC

import skfer
from skfer import TransferCNNClassifier


def _data(n=64, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["happy", "sad"])[np.arange(n) % 2]
    X = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    X[y == "sad", : size // 2] //= 3
    return X, y


@pytest.fixture(scope="module")
def fitted():
    from conftest import TINY

    X, y = _data()
    return TransferCNNClassifier(**{**TINY, "short_epochs": 2}).fit(X, y), X, y


def test_save_then_load_gives_identical_predictions(fitted, tmp_path):
    clf, X, _ = fitted
    path = clf.save(tmp_path / "model.skfer")
    restored = skfer.load(path)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert restored.classes_.tolist() == ["happy", "sad"] and restored.history_ == clf.history_
    assert restored.get_params() == clf.get_params()
    with zipfile.ZipFile(path) as archive:  # no pickle inside: JSON and a .keras file
        assert sorted(archive.namelist()) == ["estimator.json", "model.keras"]
        archive.extract("model.keras", tmp_path)
    keras.models.load_model(tmp_path / "model.keras", safe_mode=True)


def test_truncated_or_foreign_files_are_clear_errors(fitted, tmp_path):
    clf, _, _ = fitted
    path = clf.save(tmp_path / "model.skfer")
    truncated = tmp_path / "truncated.skfer"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or not an skfer model file"):
        skfer.load(truncated)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not an skfer model"):
        skfer.load(other)
    newer = tmp_path / "newer.skfer"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(newer, "w") as target:
        state = json.loads(source.read("estimator.json"))
        state.update(format=99, skfer_version="9.0.0")
        target.writestr("estimator.json", json.dumps(state))
        target.writestr("model.keras", source.read("model.keras"))
    with pytest.raises(ValueError, match=r"skfer '9\.0\.0' in file format 99"):
        skfer.load(newer)
    with pytest.raises(FileNotFoundError):
        skfer.load(tmp_path / "absent.skfer")


def test_save_refuses_an_unfitted_model(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TransferCNNClassifier().save(tmp_path / "m.skfer")


def test_transform_gives_the_penultimate_features(fitted):
    clf, X, _ = fitted
    embeddings = clf.transform(X)
    assert embeddings.shape == (len(X), clf.head[-1])
    assert (embeddings >= 0).all()  # ReLU outputs of the last hidden layer


def test_pipeline_with_a_downstream_sklearn_classifier(tiny_params):
    X, y = _data()
    pipe = Pipeline([("cnn", TransferCNNClassifier(**tiny_params)), ("svm", SVC())])
    pipe.fit(X, y)
    assert set(pipe.predict(X)) <= {"happy", "sad"}
    union = make_union(
        TransferCNNClassifier(**tiny_params), TransferCNNClassifier(**{**tiny_params, "head": (4,)})
    )
    assert union.fit(X, y).transform(X).shape == (len(X), 12)


def test_non_default_parameters_survive_save_and_load(tmp_path, tiny_params):
    from pathlib import Path

    X, y = _data()
    params = {
        **tiny_params,
        "class_weight": {"happy": 2.0, "sad": 1.0},
        "checkpoint_dir": tmp_path / "checkpoint",
        "random_state": np.int64(3),
        "head": (4, 4),
        "pooling": "max",
        "optimizer": "rmsprop",
    }
    clf = TransferCNNClassifier(**params).fit(X, y)
    restored = skfer.load(clf.save(tmp_path / "model.skfer"))
    assert restored.get_params() == clf.get_params()
    assert isinstance(restored.checkpoint_dir, Path)
    restored.fit(X, y)  # class_weight's keys are labels again, not strings
    assert restored.predict(X).shape == (len(X),)
