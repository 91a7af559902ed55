"""Your own photos: :func:`skfer.datasets.load_image_folder` and ``skfer train --data FOLDER``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skfer.cli import main
from skfer.datasets import load_image_folder
from skfer.errors import DataFileError

CLASSES = ("Happy", "neutral", "sad")  # sorted as the loader sorts them
PER_CLASS = 6


def write_photos(root: Path) -> list[Path]:
    """``PER_CLASS`` photos per class of ``CLASSES``: 30x40 and 64x64, RGB PNG, JPEG and a
    gray PNG; class k is brightest in its k-th third, so a small CNN tells them apart."""
    rng = np.random.default_rng(0)
    paths = []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            height, width = ((40, 30), (64, 64))[index % 2]
            pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
            third = slice(label * height // 3, (label + 1) * height // 3)
            pixels[third] += 170
            image = Image.fromarray(pixels)
            if index == 0:
                image = image.convert("L")
            path = root / name / f"photo{index}.{'jpg' if index % 3 == 2 else 'png'}"
            image.save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photos(root)
    return root


def test_load_image_folder_resizes_every_photo_to_one_rgb_array(photo_folder):
    data = load_image_folder(photo_folder, size=32)
    assert data.images.shape == (3 * PER_CLASS, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.class_names == CLASSES
    assert data.target.dtype == np.int64
    assert data.target.tolist() == np.repeat(np.arange(3), PER_CLASS).tolist()
    assert [Path(path).parent.name for path in data.paths] == [CLASSES[k] for k in data.target]
    assert data.no_face == () and "18 photos" in data.DESCR
    bright_third = data.images[PER_CLASS + 1, 11:21].mean()  # neutral: its middle third
    assert bright_third > data.images[PER_CLASS + 1, :10].mean() + 100


def test_load_image_folder_defaults_and_gray(photo_folder):
    assert load_image_folder(photo_folder).images.shape == (3 * PER_CLASS, 224, 224, 3)
    gray = load_image_folder(photo_folder, gray=True)
    assert gray.images.shape == (3 * PER_CLASS, 48, 48) and gray.images.dtype == np.uint8


def test_bad_entries_are_errors_naming_them(tmp_path):
    write_photos(tmp_path)
    corrupt = tmp_path / "sad" / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataFileError, match=r"broken\.jpg' is a truncated or corrupt JPEG"):
        load_image_folder(tmp_path)
    corrupt.unlink()
    notes = tmp_path / "sad" / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(DataFileError, match=r"notes\.txt' is not a .*image file"):
        load_image_folder(tmp_path)
    notes.unlink()
    (tmp_path / "angry").mkdir()
    with pytest.raises(DataFileError, match=r"Class folder .*angry' holds no photos"):
        load_image_folder(tmp_path)
    (tmp_path / "angry").rmdir()
    (tmp_path / "stray.png").write_bytes((tmp_path / "sad" / "photo1.png").read_bytes())
    with pytest.raises(DataFileError, match=r"stray\.png' lies directly in the photo folder"):
        load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="No photo folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="on_no_face must be 'error' or 'skip'"):
        load_image_folder(tmp_path, on_no_face="drop")


def test_crop_faces_reports_photos_without_a_face(tmp_path):
    pytest.importorskip("mtcnn")
    astronaut = pytest.importorskip("skimage.data").astronaut()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(astronaut).save(tmp_path / name / "face.png")
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(tmp_path / "b" / "blank.png")
    with pytest.raises(DataFileError, match=r"No face .* in 1 of 3 photos: '.*blank\.png'"):
        load_image_folder(tmp_path, crop_faces=True)
    data = load_image_folder(tmp_path, size=40, gray=True, crop_faces=True, on_no_face="skip")
    assert data.images.shape == (2, 40, 40) and data.target.tolist() == [0, 1]
    assert data.no_face == (str(tmp_path / "b" / "blank.png"),)


def test_train_on_a_photo_folder_saves_its_class_names(photo_folder, tmp_path, capsys):
    from skfer.persistence import load

    model = tmp_path / "own.skfer"
    argv = ["train", "--data", str(photo_folder), "--backbone", "tiny_test_cnn"]
    argv += ["--weights", "none", "--image-size", "24", "--head", "8", "--short-epochs", "2"]
    argv += ["--long-epochs", "1", "--batch-size", "8", "--patience", "2", "--holdout", "0.34"]
    argv += ["--test-time-flip", "--stopping-metric", "balanced_accuracy", "--out", str(model)]
    argv += ["--test-time-crops", "5", "--label-smoothing", "0.1", "--mixup-alpha", "0.2"]
    assert main([*argv, "--quiet"]) == 0
    held_out, saved = capsys.readouterr().out.splitlines()
    assert held_out.startswith("held-out 34% of the photos (early stopping) accuracy: ")
    assert held_out.endswith("(7 images)") and saved == f"saved {model}"
    clf = load(model)
    assert clf.classes_.tolist() == list(CLASSES)
    assert clf.image_shape_ == (24, 24, 3)
    assert clf.get_params()["head"] == (8,) and clf.test_time_flip
    assert clf.stopping_metric == "balanced_accuracy" and clf.patience == 2
    assert (clf.test_time_crops, clf.label_smoothing, clf.mixup_alpha) == (5, 0.1, 0.2)
    images = load_image_folder(photo_folder, size=24).images
    assert set(clf.predict(images).tolist()) <= set(CLASSES)


def test_photo_options_need_a_photo_folder(tmp_path, photo_folder, capsys):
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 2304) + ",Training\n")
    argv = ["train", "--backbone", "tiny_test_cnn", "--out", str(tmp_path / "m.skfer")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--data", str(csv), "--crop-faces"])
    assert exit_info.value.code == 2
    assert "--crop-faces: only for a folder of your own photos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--data", str(photo_folder), "--min-face", "40"])
    assert "--min-face and --on-no-face go with --crop-faces" in capsys.readouterr().err


def test_cli_choices_match_the_classifier():
    from skfer.classifier import PRECISIONS
    from skfer.cli import _PRECISIONS, _SCHEDULES, _STOPPING_METRICS
    from skfer.stopping import STOPPING_METRICS
    from skfer.training import SCHEDULES

    assert (_PRECISIONS, _SCHEDULES, _STOPPING_METRICS) == (
        PRECISIONS,
        SCHEDULES,
        STOPPING_METRICS,
    )
