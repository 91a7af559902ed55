"""``predict_paths`` and ``skfer predict`` on folders, videos and bad files, built in tmp_path.

Faces are white squares on black, found by a stand-in for MTCNN (``white_squares``), so the
tests check the reading, batching and reporting, not the detector (tests/test_faces.py does).
"""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest
from conftest import TINY
from scipy import ndimage

import skfer.faces
from skfer import TransferCNNClassifier
from skfer.cli import main
from skfer.datasets import FER2013_CLASSES
from skfer.faces import FaceBox, load_image, predict_paths

VIDEO_FRAMES, VIDEO_FPS, SQUARE = 20, 10, 40  # the video's frames, rate and square side
ROW_KEYS = ("source", "frame", "time_s", "face", "box", "label", "probabilities", "error")


def white_squares(image, *, min_size: int = 30) -> list[FaceBox]:
    """A stand-in for MTCNN: each white blob at least ``min_size`` pixels wide is a face."""
    blobs, _ = ndimage.label(load_image(image).min(axis=2) > 200)
    boxes = [
        FaceBox(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        for rows, cols in ndimage.find_objects(blobs)
    ]
    return sorted(
        (box for box in boxes if min(box.width, box.height) >= min_size),
        key=lambda box: (box.x, box.y),
    )


def squares(height: int, width: int, corners_and_sides) -> np.ndarray:
    """A black RGB image with a white square per ``(x, y, side)``."""
    image = np.zeros((height, width, 3), np.uint8)
    for x, y, side in corners_and_sides:
        image[y : y + side, x : x + side] = 255
    return image


@pytest.fixture(autouse=True)
def fake_detector(monkeypatch):
    monkeypatch.setattr(skfer.faces, "detect_faces", white_squares)


@pytest.fixture(scope="module")
def classifier() -> TransferCNNClassifier:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(28, 48, 48), dtype=np.uint8)
    return TransferCNNClassifier(**TINY).fit(X, np.arange(28) % 7)


@pytest.fixture(scope="module")
def model_file(classifier, tmp_path_factory) -> str:
    return str(classifier.save(tmp_path_factory.mktemp("model") / "model.skfer"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of photos of varied sizes, nested, with a truncated JPEG and a text file.

    Returns the folder and ``{path: number of faces}`` in the order predict_paths reads them
    (None for the broken file); ``one.png`` also holds a 20-pixel square, below 30.
    """
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested" / "deeper").mkdir(parents=True)
    one = tf.io.encode_png(squares(64, 80, [(8, 8, SQUARE), (55, 30, 20)])).numpy()
    two = tf.io.encode_jpeg(squares(120, 200, [(10, 20, 50), (120, 40, SQUARE)])).numpy()
    none = tf.io.encode_png(squares(50, 50, [])).numpy()
    files = {
        folder / "one.png": (one, 1),
        folder / "broken.jpg": (two[: len(two) // 2], None),
        folder / "nested" / "two.jpg": (two, 2),
        folder / "nested" / "deeper" / "none.png": (none, 0),
    }
    for path, (data, _) in files.items():
        path.write_bytes(data)
    (folder / "notes.txt").write_text("not a photo, and not read")
    return folder, {str(path): files[path][1] for path in sorted(files)}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    """A 20-frame MPEG-4 video at 10 frames/s: a white square moving 2 pixels a frame."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for index in range(VIDEO_FRAMES):
            image = squares(96, 128, [(10 + 2 * index, 30, SQUARE)])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def count_calls(monkeypatch) -> list[int]:
    """The number of images of each ``TransferCNNClassifier.predict_proba`` call, as made."""
    sizes = []
    original = TransferCNNClassifier.predict_proba

    def predict_proba(self, X):
        sizes.append(len(X))
        return original(self, X)

    monkeypatch.setattr(TransferCNNClassifier, "predict_proba", predict_proba)
    return sizes


# ------------------------------------------------------------------------ predict_paths


def test_folder_gives_one_row_per_face_and_reports_the_broken_file(classifier, photos):
    folder, faces = photos
    rows = predict_paths(classifier, folder)
    assert [row["source"] for row in rows] == [
        source for source, n in faces.items() for _ in range(max(n or 0, 1))
    ]
    for row in rows:
        assert list(row) == list(ROW_KEYS)
        assert row["frame"] is None and row["time_s"] is None
        if faces[row["source"]]:
            assert row["error"] is None and len(row["box"]) == 4
            assert list(row["probabilities"]) == list(FER2013_CLASSES)
            assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
            assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    (broken,) = [row for row in rows if row["error"]]
    assert broken["source"].endswith("broken.jpg")
    assert "is a truncated or corrupt JPEG file" in broken["error"]
    assert broken["face"] is broken["box"] is broken["label"] is None
    (empty,) = [row for row in rows if row["source"].endswith("none.png")]
    assert empty["error"] is empty["face"] is empty["probabilities"] is None
    two = [row for row in rows if row["source"].endswith("two.jpg")]
    assert [row["face"] for row in two] == [0, 1]
    assert [row["box"][0] for row in two] == [10, 120]  # left to right


def test_min_face_sets_the_smallest_face(classifier, photos):
    one = str(photos[0] / "one.png")
    assert [row["box"] for row in predict_paths(classifier, one)] == [[8, 8, SQUARE, SQUARE]]
    assert len(predict_paths(classifier, one, min_face=16)) == 2


def test_video_rows_have_frame_and_time(classifier, video):
    rows = predict_paths(classifier, [video], every=5)
    assert [row["frame"] for row in rows] == [0, 5, 10, 15]
    assert [row["time_s"] for row in rows] == pytest.approx([0, 0.5, 1.0, 1.5])
    assert all(row["face"] == 0 and row["source"] == video for row in rows)
    for row in rows:  # the square moved 2 pixels a frame; the codec blurs its edges a little
        assert row["box"][0] == pytest.approx(10 + 2 * row["frame"], abs=2)
    assert len(predict_paths(classifier, video, every=1)) == VIDEO_FRAMES


def test_faces_of_all_files_are_classified_in_batches(classifier, photos, video, monkeypatch):
    sizes = count_calls(monkeypatch)
    rows = predict_paths(classifier, [photos[0], video], every=5)
    n_faces = sum(row["face"] is not None for row in rows)
    assert n_faces == 1 + 2 + 4 and sizes == [n_faces]  # one call for the photos and frames
    sizes.clear()
    small_batches = predict_paths(classifier, [photos[0], video], every=5, batch_size=3)
    assert sizes == [3, 3, 1]
    for row, other in zip(rows, small_batches, strict=True):
        assert other["label"] == row["label"]
        if row["probabilities"]:
            assert list(other["probabilities"].values()) == pytest.approx(
                list(row["probabilities"].values()), abs=1e-5
            )


def test_a_broken_video_is_one_error_row(classifier, photos, video, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(40))
    one = str(photos[0] / "one.png")
    rows = predict_paths(classifier, [one, bad, video], every=10)
    assert [(row["source"], row["frame"]) for row in rows] == [
        (one, None),
        (str(bad), None),
        (video, 0),
        (video, 10),
    ]
    assert "is not a video that FFmpeg can read, or is truncated or corrupt" in rows[1]["error"]
    assert str(bad) in rows[1]["error"]


def test_videos_without_pyav_name_the_extra_to_install(classifier, photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(ImportError, match=r"needs PyAV \(the av package\).*skfer\[faces\]"):
        predict_paths(classifier, [photos[0], photos[0] / "clip.mp4"])


@pytest.mark.parametrize(
    "option, message",
    [
        ({"min_face": 8}, "min_face must be an integer of at least 12"),
        ({"every": 0}, "every must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"margin": -1}, "margin must be a number >= 0"),
    ],
)
def test_bad_options_are_errors_not_rows(classifier, photos, option, message):
    with pytest.raises(ValueError, match=message):
        predict_paths(classifier, photos[0], **option)


def test_an_empty_folder_is_an_error_row(classifier, tmp_path):
    (row,) = predict_paths(classifier, tmp_path)
    assert row["source"] == str(tmp_path)
    assert row["error"].startswith(f"'{tmp_path}' is a folder without a photo")


# ------------------------------------------------------------------------ skfer predict


def test_cli_json_reports_each_photo_and_frame(model_file, photos, video, monkeypatch, capsys):
    sizes = count_calls(monkeypatch)
    folder, faces = photos
    argv = ["predict", model_file, str(folder), video, "--every", "5", "--json", "--quiet"]
    assert main(argv) == 4  # the broken JPEG
    captured = capsys.readouterr()
    reports = json.loads(captured.out)
    assert [report["image"] for report in reports] == [*faces, *[video] * 4]
    for report, n in zip(reports, faces.values(), strict=False):
        assert set(report) == ({"image", "error"} if n is None else {"image", "faces"})
        assert n is None or [face["face"] for face in report["faces"]] == list(range(n))
    frames = reports[len(faces) :]
    assert [(report["frame"], report["time_s"]) for report in frames] == [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (15, 1.5),
    ]
    assert [len(report["faces"]) for report in frames] == [1] * 4
    assert sizes == [1 + 2 + 4]  # one predict_proba call for all faces
    assert captured.err.splitlines()[-1] == "error: 1 of 5 files failed (see above)"


def test_cli_csv_has_one_row_per_face(model_file, classifier, photos, video, tmp_path):
    folder, faces = photos
    out = tmp_path / "results" / "faces.csv"
    argv = ["predict", model_file, str(folder), video, "--every", "5", "--csv", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 4
    with open(out, newline="") as file:
        table = list(csv.DictReader(file))
    probability_columns = [f"p_{name}" for name in FER2013_CLASSES]
    assert list(table[0]) == [
        *("source", "frame", "time_s", "face", "x", "y", "w", "h", "label"),
        *probability_columns,
        "error",
    ]
    rows = predict_paths(classifier, [folder, video], every=5)
    assert len(table) == len(rows) == 5 + 4  # 4 photos (2 faces in one), 4 frames
    for line, row in zip(table, rows, strict=True):
        assert line["source"] == row["source"]
        assert line["frame"] == ("" if row["frame"] is None else str(row["frame"]))
        assert line["face"] == ("" if row["face"] is None else str(row["face"]))
        assert line["error"] == (row["error"] or "")
        if row["box"]:
            assert [int(line[key]) for key in "xywh"] == row["box"]
            assert line["label"] == row["label"]
            assert math.fsum(float(line[key]) for key in probability_columns) == pytest.approx(1)
    assert [float(line["time_s"]) for line in table if line["time_s"]] == [0, 0.5, 1.0, 1.5]


def test_cli_text_lists_photos_and_frames_and_exits_0(model_file, photos, video, capsys):
    one = str(photos[0] / "one.png")
    argv = ["predict", model_file, one, video, "--every", "10", "--min-face", "16", "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert lines[0] == f"{one}: 2 faces"
    assert lines[1].startswith("  face 1 at x=8 y=8 w=40 h=40: ")
    assert lines[2].startswith("  face 2 at x=55 y=30 w=20 h=20: ")
    assert lines[3] == f"{video} frame 0 (0.00 s): 1 face"
    assert lines[5] == f"{video} frame 10 (1.00 s): 1 face"


def test_cli_without_pyav_is_a_usage_error(model_file, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "av", None)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert main(["predict", model_file, str(clip), "--quiet"]) == 2
    assert "install it with pip install 'skfer[faces]'" in capsys.readouterr().err


def test_cli_rejects_a_min_face_below_the_detector_window(model_file, photos, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", model_file, str(photos[0]), "--min-face", "8"])
    assert exit_.value.code == 2
    assert "argument --min-face: must be int >= 12, got '8'" in capsys.readouterr().err


# ------------------------------------------------------- already-cropped faces, run folders


def test_whole_image_takes_each_photo_as_one_face_without_the_detector(
    classifier, photos, monkeypatch
):
    def no_detector(image, *, min_size=30):
        raise AssertionError("find_faces=False must not run the detector")

    monkeypatch.setattr(skfer.faces, "detect_faces", no_detector)
    folder, faces = photos
    one = folder / "one.png"
    rows = predict_paths(classifier, [one, folder / "nested" / "two.jpg"], find_faces=False)
    assert [(row["face"], row["box"]) for row in rows] == [
        (0, [0, 0, 80, 64]),
        (0, [0, 0, 200, 120]),
    ]
    crop = skfer.faces.crop_faces(load_image(one), [(0, 0, 80, 64)], size=48, margin=0.0)
    expected = classifier.predict_proba(crop)[0]
    assert list(rows[0]["probabilities"].values()) == pytest.approx(expected.tolist())


def test_find_faces_must_be_a_bool(classifier, photos):
    with pytest.raises(ValueError, match="find_faces must be True"):
        predict_paths(classifier, photos[0], find_faces="no")


def run_folder(root, classifier, *, ensemble: bool):
    """A folder laid out as skfer reproduce leaves it: results.json and models/."""
    (root / "models").mkdir(parents=True)
    classifier.save(root / "models" / "base_model_2.skfer")
    document = {
        "best_base_model": "B",
        "models": {"A": "base_model_1.skfer", "B": "base_model_2.skfer"},
    }
    if ensemble:
        (root / "models" / "ensemble.skfer").write_bytes(b"")
        document["models"]["ensemble (MLP stack)"] = "ensemble.skfer"
    (root / "results.json").write_text(json.dumps(document))
    return root


def test_a_run_folder_gives_its_ensemble_else_its_best_base_model(classifier, tmp_path):
    from skfer.persistence import load, run_model_file

    with_ensemble = run_folder(tmp_path / "one", classifier, ensemble=True)
    assert run_model_file(with_ensemble) == with_ensemble / "models" / "ensemble.skfer"
    assert run_model_file(with_ensemble / "models") == with_ensemble / "models" / "ensemble.skfer"
    without = run_folder(tmp_path / "two", classifier, ensemble=False)
    assert run_model_file(without) == without / "models" / "base_model_2.skfer"
    assert load(without).classes_.tolist() == classifier.classes_.tolist()
    # A run that ships the stack's best member alone recommends that member's file, which
    # need not be the stopping part's best base model, and comes before an ensemble file
    # (one left by an earlier run into the same folder).
    member = run_folder(tmp_path / "three", classifier, ensemble=True)
    classifier.save(member / "models" / "base_model_1.skfer")
    document = json.loads((member / "results.json").read_text())
    document["recommended_model"] = "base_model_1.skfer"
    (member / "results.json").write_text(json.dumps(document))
    assert run_model_file(member) == member / "models" / "base_model_1.skfer"
    with pytest.raises(FileNotFoundError, match="not the output of a skfer reproduce run"):
        run_model_file(tmp_path)


def test_cli_predicts_with_a_run_folder_on_cropped_faces(classifier, photos, tmp_path, capsys):
    run = run_folder(tmp_path / "run", classifier, ensemble=False)
    one = str(photos[0] / "one.png")
    assert main(["predict", str(run), one, "--whole-image", "--json", "--quiet"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["image"] == one
    assert [face["box"] for face in report["faces"]] == [[0, 0, 80, 64]]
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(run), one, "--whole-image", "--min-face", "20"])
    assert exit_.value.code == 2
    assert "--whole-image does not run" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), one, "--quiet"]) == 4
    assert "not the output of a skfer reproduce run" in capsys.readouterr().err
