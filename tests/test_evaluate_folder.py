"""``skfer evaluate MODEL --data FOLDER``: labelled photos, scored with the model's classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from test_image_folder import CLASSES, PER_CLASS, write_photos

import skfer
from skfer.cli import main
from skfer.datasets import FER2013_CLASSES, load_image_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled") / "photos"
    write_photos(root)
    return root


@pytest.fixture(scope="module")
def own_model(photos, tmp_path_factory) -> Path:
    """``skfer train --data FOLDER`` on the tiny backbone: classes Happy, neutral, sad."""
    model = tmp_path_factory.mktemp("own_model") / "own.skfer"
    argv = ["train", "--data", str(photos), "--backbone", "tiny_test_cnn", "--weights", "none"]
    argv += ["--image-size", "24", "--head", "8", "--short-epochs", "2", "--long-epochs", "0"]
    argv += ["--batch-size", "8", "--holdout", "0.34", "--out", str(model), "--quiet"]
    assert main(argv) == 0
    return model


def subset(photos: Path, root: Path, names: dict[str, str]) -> Path:
    """A copy of some class folders of ``photos``, renamed: ``{old name: new name}``."""
    for old, new in names.items():
        shutil.copytree(photos / old, root / new)
    return root


def test_a_model_trained_on_photos_is_scored_on_labelled_photos(own_model, photos, capsys):
    assert main(["evaluate", str(own_model), "--data", str(photos), "--json"]) == 0
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)
    assert (result["split"], result["n_samples"]) == ("photos", 3 * PER_CLASS)
    assert list(result["recall_per_class"]) == list(CLASSES)
    assert np.asarray(result["confusion_matrix"]).sum() == 3 * PER_CLASS
    data = load_image_folder(photos, size=24)
    truth = np.asarray(data.class_names)[data.target]
    assert result["accuracy"] == np.mean(skfer.load(own_model).predict(data.images) == truth)
    assert "note: the scores on photos are test scores only if the model never used" in (
        captured.err
    )
    assert main(["evaluate", str(own_model), "--data", str(photos), "--quiet"]) == 0
    header, _, row = capsys.readouterr().out.strip().splitlines()
    assert "recall Happy" in header and "recall neutral" in header
    assert row.startswith(f"| own.skfer | photos | {3 * PER_CLASS} |")


def test_a_folder_without_some_classes_says_how_they_count(own_model, photos, tmp_path, capsys):
    folder = subset(photos, tmp_path / "two", {"Happy": "Happy", "sad": "sad"})
    assert main(["evaluate", str(own_model), "--data", str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)
    assert result["n_samples"] == 2 * PER_CLASS
    assert list(result["recall_per_class"]) == list(CLASSES)
    assert "has no photos of neutral; their scores count as 0 in the macro averages" in (
        captured.err
    )


def test_class_folders_the_model_does_not_know_are_named_with_the_fix(
    own_model, photos, tmp_path, capsys
):
    folder = subset(photos, tmp_path / "other", {"Happy": "happy", "sad": "angry"})
    assert main(["evaluate", str(own_model), "--data", str(folder), "--quiet"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and "Traceback" not in captured.err
    assert "the class folder(s) ['angry', 'happy'] are not classes of" in line
    assert "which knows ['Happy', 'neutral', 'sad']; rename them" in line


def test_a_model_of_own_classes_on_fer2013_data_points_to_a_photo_folder(
    own_model, tmp_path, capsys
):
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n3," + " ".join(["1"] * 2304) + ",PublicTest\n")
    assert main(["evaluate", str(own_model), "--data", str(csv), "--quiet"]) == 4
    (line,) = capsys.readouterr().err.splitlines()
    assert "predicts its own classes ['Happy', 'neutral', 'sad'], not FER2013's" in line
    assert "--data photos/ (photos/Happy/*.jpg, ...)" in line


def test_a_fer2013_model_reads_class_folders_named_after_fer2013_in_any_case(
    photos, tmp_path, capsys
):
    data = load_image_folder(photos, size=48, gray=True)
    happy, sad = FER2013_CLASSES.index("happy"), FER2013_CLASSES.index("sad")
    codes = np.array([happy, FER2013_CLASSES.index("neutral"), sad])
    model = skfer.TransferCNNClassifier(**{**TINY, "long_epochs": 0})
    model.fit(data.images, codes[data.target]).save(tmp_path / "fer.skfer")
    folder = subset(photos, tmp_path / "faces", {"Happy": "HAPPY", "sad": "Sad"})
    argv = ["evaluate", str(tmp_path / "fer.skfer"), "--data", str(folder), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)
    assert list(result["recall_per_class"]) == list(FER2013_CLASSES)
    matrix = np.asarray(result["confusion_matrix"])
    assert matrix[[happy, sad]].sum() == 2 * PER_CLASS and matrix.sum() == 2 * PER_CLASS
    assert "has no photos of angry, disgust, fear, surprise, neutral;" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "PublicTest"], "--split: only for FER2013 data"),
        (["--min-face", "40"], "--min-face and --on-no-face go with --crop-faces"),
    ],
)
def test_options_that_do_not_fit_a_photo_folder_are_usage_errors(
    photos, tmp_path, capsys, extra, message
):
    model = tmp_path / "absent.skfer"
    model.write_bytes(b"never read: the options fail first")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(model), "--data", str(photos), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_face_options_need_a_photo_folder(tmp_path, capsys):
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n3," + " ".join(["1"] * 2304) + ",PublicTest\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(csv), "--data", str(csv), "--crop-faces"])
    assert exit_info.value.code == 2
    assert "--crop-faces: only for a folder of labelled photos" in capsys.readouterr().err


def test_load_image_folder_is_importable_from_the_package():
    assert skfer.load_image_folder is load_image_folder
    assert "load_image_folder" in skfer.__all__
