"""Tests for :mod:`skfer.datasets`: the real FER2013 CSV, malformed CSVs, image folders."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from skfer import datasets
from skfer.datasets import FER2013_CLASSES, SPLIT_ATTRIBUTES, load_fer2013

README_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
}


def pixel_rows(n: int) -> np.ndarray:
    """``n`` distinct 48x48 uint8 images covering 0..255, including 1-, 2- and 3-digit values."""
    return (
        (np.arange(n * 2304).reshape(n, 48, 48) * 7 + np.arange(n)[:, None, None]) % 256
    ).astype(np.uint8)


def csv_line(emotion: object, image: np.ndarray | str, usage: str) -> str:
    pixels = image if isinstance(image, str) else " ".join(map(str, image.ravel()))
    return f"{emotion},{pixels},{usage}"


def write_csv(path: Path, lines: list[str], *, compress: bool = False, end: str = "\n") -> Path:
    text = end.join(lines) + end
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


HEADER = "emotion,pixels,Usage"


@pytest.fixture(scope="module")
def shared(fer2013_csv):
    return load_fer2013(fer2013_csv)


# --------------------------------------------------------------- the real shared file


def test_shared_file_counts_match_readme(shared, fer2013_csv):
    assert shared.splits == ("Training", "PublicTest")
    assert "private_test" not in shared
    assert shared.class_names == FER2013_CLASSES
    assert shared.source == str(fer2013_csv)
    assert "FER2013" in shared.DESCR
    for usage, counts in README_COUNTS.items():
        split = shared[SPLIT_ATTRIBUTES[usage]]
        assert split.usage == usage
        assert split.images.shape == (sum(counts), 48, 48)
        assert split.images.dtype == np.uint8 and split.images.flags.c_contiguous
        assert split.target.dtype == np.int64 and split.rows.dtype == np.int64
        assert np.bincount(split.target, minlength=7).tolist() == counts
        assert np.all(np.diff(split.rows) > 0)
    all_rows = np.concatenate([shared.train.rows, shared.public_test.rows])
    assert np.array_equal(np.sort(all_rows), np.arange(28709 + 3589))


def test_shared_file_first_rows_match_naive_parse(shared, fer2013_csv):
    with gzip.open(fer2013_csv, "rt") as file:
        assert file.readline().strip() == HEADER
        lines = [file.readline().strip().split(",") for _ in range(5)]
    for row, (emotion, pixels, usage) in enumerate(lines):
        split = shared[SPLIT_ATTRIBUTES[usage]]
        (index,) = np.flatnonzero(split.rows == row)
        naive = np.array(pixels.split(), dtype=np.int64).reshape(48, 48)
        np.testing.assert_array_equal(split.images[index], naive)
        assert split.target[index] == int(emotion)


# ---------------------------------------------------------------------- tiny CSVs


@pytest.mark.parametrize("compress", [False, True])
def test_tiny_csv_round_trip(tmp_path, compress):
    images = pixel_rows(5)
    usages = ["Training", "PrivateTest", "Training", "PublicTest", "PrivateTest"]
    lines = [HEADER] + [
        csv_line(i % 7, image, u) for i, (image, u) in enumerate(zip(images, usages, strict=True))
    ]
    # gzip detected by magic bytes, whatever the suffix; CRLF line endings accepted
    path = write_csv(tmp_path / "fer.csv", lines, compress=compress, end="\r\n")
    data = load_fer2013(path)
    assert data.splits == ("Training", "PublicTest", "PrivateTest")
    for usage, rows in {"Training": [0, 2], "PublicTest": [3], "PrivateTest": [1, 4]}.items():
        split = data[SPLIT_ATTRIBUTES[usage]]
        assert split.rows.tolist() == rows
        np.testing.assert_array_equal(split.images, images[rows])
        assert split.target.tolist() == [row % 7 for row in rows]


def test_column_order_leading_zeros_and_missing_final_newline(tmp_path):
    images = pixel_rows(2)
    padded = " ".join(f"{value:04d}" for value in images[1].ravel())  # leading zeros, tabs
    lines = [
        "Usage,emotion,pixels",
        "PublicTest,3," + " ".join(map(str, images[0].ravel())),
        "PublicTest,\t6 ," + padded.replace(" ", "\t", 3),
    ]
    path = tmp_path / "reordered.csv"
    path.write_text("\n".join(lines))
    data = load_fer2013(path)
    np.testing.assert_array_equal(data.public_test.images, images)
    assert data.public_test.target.tolist() == [3, 6]


def test_lines_spanning_many_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_PIECE_BYTES", 1000)
    monkeypatch.setattr(datasets, "_GZIP_BLOCK_BYTES", 300)
    images = pixel_rows(12)
    lines = [HEADER] + [csv_line(i % 7, image, "Training") for i, image in enumerate(images)]
    for compress in (False, True):
        # trailing blank lines, over several pieces, are not rows
        path = write_csv(tmp_path / f"many{compress}.csv", lines + [""] * 2500, compress=compress)
        np.testing.assert_array_equal(load_fer2013(path).train.images, images)
    lines[11] = lines[11].replace(",Training", ",Validation")
    with pytest.raises(ValueError, match=r"line 12 \(data row 10\).*Usage.*'Validation'"):
        load_fer2013(write_csv(tmp_path / "bad.csv.gz", lines, compress=True))


GOOD = " ".join(["7"] * 2304)
MALFORMED = {
    "pixel count": (
        csv_line(0, " ".join(["7"] * 2303), "Training"),
        r"2303 pixel values; expected 2304",
    ),
    "non-numeric": (csv_line(0, "7 x7 " + GOOD[4:], "Training"), r"pixel 1 is not a number.*'x7'"),
    "negative": (csv_line(0, "-7 " + GOOD[2:], "Training"), r"pixel 0 is not a number.*'-7'"),
    "too big": (csv_line(0, GOOD[:-1] + "256", "Training"), r"pixel 2303 is 256.*0\.\.255.*'256'"),
    "four digits": (csv_line(0, "1000 " + GOOD[2:], "Training"), r"pixel 0 is 1000"),
    "emotion 7": (csv_line(7, GOOD, "Training"), r"emotion must be an integer label 0\.\.6.*'7'"),
    "emotion text": (csv_line("happy", GOOD, "Training"), r"emotion must be.*'happy'"),
    "usage": (csv_line(0, GOOD, "Validation"), r"unknown Usage.*PrivateTest.*'Validation'"),
    "fields": (csv_line(0, GOOD, "Training,extra"), r"4 comma-separated field\(s\); expected 3"),
    "blank line": ("", r"1 comma-separated field\(s\)"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_row_names_line_and_value(tmp_path, case, compress):
    bad_line, message = MALFORMED[case]
    lines = [HEADER, csv_line(1, GOOD, "Training"), bad_line, csv_line(2, GOOD, "PublicTest")]
    path = write_csv(tmp_path / "bad.csv", lines, compress=compress)
    with pytest.raises(ValueError, match=r"line 3 \(data row 1\)") as info:
        load_fer2013(path)
    assert "Fix or remove the row" in str(info.value)
    assert "Received: " in str(info.value)
    assert info.match(message)


@pytest.mark.parametrize("compress", [False, True])
def test_missing_header_column(tmp_path, compress):
    path = write_csv(tmp_path / "h.csv", ["emotion,pixels", "0," + GOOD], compress=compress)
    with pytest.raises(ValueError, match=r"line 1.*\['Usage'\].*emotion,pixels,Usage"):
        load_fer2013(path)


def test_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_fer2013(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="is empty"):
        load_fer2013(write_csv(tmp_path / "empty.csv.gz", [""], compress=True, end=""))
    with pytest.raises(ValueError, match="no data rows"):
        load_fer2013(write_csv(tmp_path / "header.csv", [HEADER]))


def test_corrupt_gzip(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 2304)
    payload = gzip.compress((HEADER + "\n" + csv_line(0, noise, "Training") + "\n").encode())
    (tmp_path / "cut.csv.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="truncated gzip"):
        load_fer2013(tmp_path / "cut.csv.gz")
    (tmp_path / "junk.csv.gz").write_bytes(payload[:10] + b"\xff" * 50)
    with pytest.raises(ValueError, match="not a valid gzip"):
        load_fer2013(tmp_path / "junk.csv.gz")


def test_splits_filter(tmp_path):
    images = pixel_rows(3)
    lines = [HEADER] + [
        csv_line(0, image, usage)
        for image, usage in zip(images, ["Training", "PublicTest", "Training"], strict=True)
    ]
    path = write_csv(tmp_path / "s.csv", lines)
    data = load_fer2013(path, splits=["PublicTest"])
    assert data.splits == ("PublicTest",) and "train" not in data
    np.testing.assert_array_equal(data.public_test.images, images[[1]])
    assert load_fer2013(path, splits=("public_test", "train")).splits == ("Training", "PublicTest")
    with pytest.raises(ValueError, match=r"Unknown FER2013 split 'validation'.*PrivateTest"):
        load_fer2013(path, splits=["validation"])
    with pytest.raises(ValueError, match=r"not in .* which holds \['Training', 'PublicTest'\]"):
        load_fer2013(path, splits=["PrivateTest"])


# -------------------------------------------------------------------- image folders


def write_png(path: Path, image: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image[:, :, None]).numpy())


def test_image_folder_round_trip(tmp_path):
    images = pixel_rows(3 * len(FER2013_CLASSES))
    expected = {}  # relative path -> (image, class index, usage)
    for label, name in enumerate(FER2013_CLASSES):
        folder = name.upper() if label == 0 else name  # class folders are case-insensitive
        for index, relative, usage in [
            (3 * label, f"train/{folder}/Training_{label}.png", "Training"),
            (3 * label + 1, f"train/{folder}/plain_{label}.png", "Training"),
            (3 * label + 2, f"test/{folder}/PrivateTest_{label}.png", "PrivateTest"),
        ]:
            expected[relative] = (images[index], label, usage)
    expected["test/happy/PublicTest_9.png"] = (images[0], 3, "PublicTest")
    expected["test/sad/unprefixed.png"] = (images[1], 4, "PublicTest")
    for relative, (image, _, _) in expected.items():
        write_png(tmp_path / relative, image)
    data = load_fer2013(tmp_path)
    assert data.splits == ("Training", "PublicTest", "PrivateTest")
    order = sorted(expected)
    for usage, attribute in SPLIT_ATTRIBUTES.items():
        split = data[attribute]
        relatives = [r for r in order if expected[r][2] == usage]
        assert split.rows.tolist() == [order.index(r) for r in relatives]
        np.testing.assert_array_equal(split.images, [expected[r][0] for r in relatives])
        assert split.target.tolist() == [expected[r][1] for r in relatives]
    assert load_fer2013(tmp_path, splits=["PublicTest"]).splits == ("PublicTest",)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="No images found"):
        load_fer2013(tmp_path)
    write_png(tmp_path / "train" / "happy" / "a.png", pixel_rows(1)[0])
    (tmp_path / "train" / "happy" / "b.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"Cannot decode image .*b\.jpg"):
        load_fer2013(tmp_path)
    (tmp_path / "train" / "happy" / "b.jpg").unlink()
    write_png(tmp_path / "train" / "happy" / "c.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(ValueError, match=r"c\.png' is 48x40 pixels.*48x48"):
        load_fer2013(tmp_path)
    (tmp_path / "train" / "happy" / "c.png").unlink()
    write_png(tmp_path / "test" / "joy" / "d.png", pixel_rows(1)[0])
    with pytest.raises(ValueError, match=r"Unknown class folder .*joy.*angry, disgust"):
        load_fer2013(tmp_path)


def test_bad_files_raise_the_typed_data_file_error(tmp_path):
    from skfer.errors import DataFileError

    bad = tmp_path / "fer.csv"
    for content in ("", "emotion,pixels\n", "emotion,pixels,Usage\n9,1 2,Training\n"):
        bad.write_text(content)
        with pytest.raises(DataFileError):
            load_fer2013(bad)
    bad.write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 2304) + ",Training\n")
    with pytest.raises(DataFileError, match=r"Split\(s\) \['PublicTest'\] requested"):
        load_fer2013(bad, splits=["PublicTest"])
    with pytest.raises(ValueError, match="Unknown FER2013 split") as info:
        load_fer2013(bad, splits=["Validation"])
    assert not isinstance(info.value, DataFileError)  # a bad argument, not a bad file
