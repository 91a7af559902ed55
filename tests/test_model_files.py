"""``skfer.load`` on files that are not skfer models says what they are and what to do."""

from __future__ import annotations

import joblib
import pytest
from conftest import TINY, two_class_images

import skfer
from skfer.classifier import TransferCNNClassifier
from skfer.errors import DataFileError


@pytest.fixture(scope="module")
def fitted():
    X, y = two_class_images(32, 16, darken=4)
    return TransferCNNClassifier(**TINY).fit(X, y)


@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_file_is_named_as_such(fitted, tmp_path, compress):
    path = tmp_path / "x.joblib"
    joblib.dump(fitted, path, compress=compress)
    with pytest.raises(DataFileError, match="is a pickle or joblib file, not an skfer model"):
        skfer.load(path)


def test_keras_file_is_named_as_such(fitted, tmp_path):
    path = tmp_path / "model.keras"
    fitted.model_.save(path)
    with pytest.raises(DataFileError, match=r"is a Keras model file \(\.keras\).*load_model"):
        skfer.load(path)


def test_other_zip_and_truncated_file(fitted, tmp_path):
    import zipfile

    other = tmp_path / "other.skfer"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(DataFileError, match="is a zip file but not an skfer model"):
        skfer.load(other)
    data = fitted.save(tmp_path / "m.skfer").read_bytes()
    truncated = tmp_path / "truncated.skfer"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match="is truncated or not an skfer model file"):
        skfer.load(truncated)
