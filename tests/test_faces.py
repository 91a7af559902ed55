"""Faces in real photos shipped with scikit-image and matplotlib (nothing is downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import cbook
from skimage import data

import skfer
from skfer.datasets import FER2013_CLASSES
from skfer.faces import FaceBox, annotate, crop_faces, detect_faces, load_image, predict_faces

# (x0, y0, x1, y1) of each face, read off the photos by eye.
ASTRONAUT_FACE = (180, 60, 265, 170)
GRACE_HOPPER_FACE = (160, 130, 370, 330)


def iou(box: FaceBox, region: tuple[int, int, int, int]) -> float:
    """Intersection over union of a box and an ``(x0, y0, x1, y1)`` region."""
    x0, y0, x1, y1 = region
    width = min(box.x + box.width, x1) - max(box.x, x0)
    height = min(box.y + box.height, y1) - max(box.y, y0)
    inter = max(width, 0) * max(height, 0)
    return inter / (box.width * box.height + (x1 - x0) * (y1 - y0) - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_boxes(astronaut) -> list[FaceBox]:
    return detect_faces(astronaut)


@pytest.fixture(scope="module")
def grace_hopper_path() -> str:
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def two_faces(astronaut, grace_hopper_path) -> np.ndarray:
    """The astronaut (512x512) and Grace Hopper (top 512 rows) side by side."""
    return np.hstack([astronaut, load_image(grace_hopper_path)[:512]])


@pytest.fixture(scope="module")
def two_faces_boxes(two_faces) -> list[FaceBox]:
    return detect_faces(two_faces)


# ------------------------------------------------------------------------ detection


def test_astronaut_has_one_face_on_her_face(astronaut_boxes):
    assert len(astronaut_boxes) == 1
    box = astronaut_boxes[0]
    assert iou(box, ASTRONAUT_FACE) > 0.6
    assert all(isinstance(value, int) for value in (box.x, box.y, box.width, box.height))
    assert 0.9 < box.score <= 1


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_no_face_is_an_empty_list(name):
    assert detect_faces(getattr(data, name)()) == []


def test_two_faces_side_by_side_left_to_right(two_faces_boxes):
    boxes = two_faces_boxes
    assert len(boxes) == 2
    x0, y0, x1, y1 = GRACE_HOPPER_FACE
    assert iou(boxes[0], ASTRONAUT_FACE) > 0.6
    assert iou(boxes[1], (x0 + 512, y0, x1 + 512, y1)) > 0.6


def test_gray_input(astronaut):
    gray = np.round(astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    (box,) = detect_faces(gray)
    assert iou(box, ASTRONAUT_FACE) > 0.6


def test_rgba_input_ignores_alpha(astronaut, astronaut_boxes):
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])
    assert detect_faces(rgba) == astronaut_boxes


def test_file_path_input(grace_hopper_path):
    (box,) = detect_faces(grace_hopper_path)
    assert iou(box, GRACE_HOPPER_FACE) > 0.6


def test_faces_below_min_size_are_not_searched(astronaut):
    assert detect_faces(astronaut[:100, :100], min_size=200) == []
    with pytest.raises(ValueError, match="min_size must be an integer of at least 12"):
        detect_faces(astronaut, min_size=5)


# ------------------------------------------------------------------------ load_image


def test_load_image_layouts_and_dtypes():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    for image in (gray, gray[:, :, np.newaxis], np.dstack([rgb, gray]), gray.astype(np.int64)):
        loaded = load_image(image)
        assert loaded.dtype == np.uint8
        np.testing.assert_array_equal(loaded, rgb)
    np.testing.assert_array_equal(load_image(np.full((2, 2), 0.5)), np.full((2, 2, 3), 128))
    np.testing.assert_array_equal(load_image(np.ones((2, 2), bool)), np.full((2, 2, 3), 255))
    assert load_image(rgb) is not rgb


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((4, 4), 2.0), r"float image must hold finite values in \[0, 1\]"),
        (np.full((4, 4), np.nan), "replace NaN and infinite pixels"),
        (np.full((4, 4), 300, np.uint16), "integer image must hold values in 0..255"),
        (np.zeros((4, 4, 2)), r"\(H, W, 4\) RGBA array"),
        (np.zeros((1, 4, 4, 3)), "Received: shape=\\(1, 4, 4, 3\\)"),
        (np.zeros((0, 4)), "image is empty"),
        (np.array([["a"]]), "real numbers"),
    ],
)
def test_load_image_rejects(image, message):
    with pytest.raises(ValueError, match=message):
        load_image(image)


def test_load_image_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image file at"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="is a folder, not an image file"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not an image", r"is not an image file \(its first bytes b'not an i'"),
        (b"", r"is empty \(0 bytes\)"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "is a WebP image, a format skfer cannot read"),
        (b"II*\x00" + bytes(20), "is a TIFF image, a format skfer cannot read"),
        (b"\xff\xd8\xff\xe0" + bytes(20), "is a truncated or corrupt JPEG file"),
    ],
)
def test_load_image_says_what_the_file_is(tmp_path, content, message):
    from skfer.errors import DataFileError

    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as error:
        load_image(path)
    assert "function_node" not in str(error.value) and "DecodeImage" not in str(error.value)


# ------------------------------------------------------------------------ crop_faces


def test_crop_shapes_and_dtypes(astronaut, astronaut_boxes):
    gray = crop_faces(astronaut, astronaut_boxes)
    assert gray.shape == (1, 48, 48) and gray.dtype == np.uint8
    rgb = crop_faces(astronaut, [[10, 20, 30, 40], (100, 100, 5, 5)], size=32, grayscale=False)
    assert rgb.shape == (2, 32, 32, 3) and rgb.dtype == np.uint8
    assert crop_faces(astronaut, []).shape == (0, 48, 48)
    assert crop_faces(astronaut, [], grayscale=False).shape == (0, 48, 48, 3)


def test_margin_adds_context_and_is_clipped_at_borders():
    image = np.zeros((100, 100), np.uint8)
    image[40:60, 40:60] = 200
    (tight,) = crop_faces(image, [(40, 40, 20, 20)], margin=0.0)
    assert np.all(tight == 200)
    (wide,) = crop_faces(image, [(40, 40, 20, 20)], margin=0.5, size=40)
    assert wide[0, 0] == 0 and wide[20, 20] == 200
    # At a corner the expanded box is clipped, not padded: only real pixels are cropped.
    (corner,) = crop_faces(np.full((100, 100), 200, np.uint8), [(0, 0, 30, 30)], margin=1.0)
    assert np.all(corner == 200)


def test_crop_faces_rejects_bad_boxes_and_options(astronaut):
    with pytest.raises(ValueError, match="outside the 512x512 image"):
        crop_faces(astronaut, [(600, 600, 10, 10)])
    with pytest.raises(ValueError, match="positive width and height"):
        crop_faces(astronaut, [(0, 0, 0, 10)])
    with pytest.raises(ValueError, match="FaceBox or an"):
        crop_faces(astronaut, [(0, 0, 10)])
    with pytest.raises(ValueError, match="margin must be"):
        crop_faces(astronaut, [], margin=-0.1)
    with pytest.raises(ValueError, match="size must be"):
        crop_faces(astronaut, [], size=0)


# --------------------------------------------------------------- predict_faces, annotate


def test_predict_faces(tiny_params, two_faces, two_faces_boxes):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(28, 48, 48), dtype=np.uint8)
    classifier = skfer.TransferCNNClassifier(**tiny_params).fit(X, np.arange(28) % 7)

    results = predict_faces(classifier, two_faces)
    assert [result["box"] for result in results] == [
        [box.x, box.y, box.width, box.height] for box in two_faces_boxes
    ]
    for result in results:
        probabilities = result["probabilities"]
        assert list(probabilities) == list(FER2013_CLASSES)
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert result["label"] == max(probabilities, key=probabilities.get)
    json.dumps(results)

    names = {k: f"class {k}" for k in range(7)}
    named = predict_faces(classifier, two_faces, class_names=names)
    assert [list(result["probabilities"]) for result in named] == [list(names.values())] * 2
    assert predict_faces(classifier, data.coffee()) == []

    with pytest.raises(ValueError, match=r"no name for \[6\]"):
        predict_faces(classifier, two_faces, class_names={k: f"c{k}" for k in range(6)})
    with pytest.raises(ValueError, match="fit it first"):
        predict_faces(skfer.TransferCNNClassifier(**tiny_params), two_faces)


def test_annotate_writes_a_png(astronaut, astronaut_boxes, tmp_path):
    box = astronaut_boxes[0]
    results = [
        {"box": [box.x, box.y, box.width, box.height], "label": "happy", "probabilities": {}},
        {"box": [0, 0, 40, 40], "label": "sad", "probabilities": {"sad": 0.75}},
    ]
    path = annotate(astronaut, results, tmp_path / "faces.png")
    assert path == tmp_path / "faces.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = load_image(path)
    assert drawn.shape == astronaut.shape
    assert not np.array_equal(drawn, astronaut)
    with pytest.raises(ValueError, match="each with a 'box'"):
        annotate(astronaut, [{"label": "sad"}], tmp_path / "bad.png")
