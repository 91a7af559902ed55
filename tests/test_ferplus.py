"""Tests for :mod:`skfer.ferplus`: FER+ majority labels, vote distributions, exclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from skfer.datasets import FER2013_CLASSES, load_fer2013
from skfer.ferplus import (
    EXCLUSION_REASONS,
    FERPLUS_CLASSES,
    load_dataset,
    load_ferplus,
)

FERPLUS_HEADER = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
)
# (Usage, image name, votes over the 10 FER+ columns), one per FER2013 row, and the outcome.
ROWS = [
    ("Training", "fer0.png", [2, 8, 0, 0, 0, 0, 0, 0, 0, 0]),  # happiness
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # not_a_face
    ("Training", "fer2.png", [4, 0, 0, 0, 0, 0, 0, 0, 6, 0]),  # unknown
    ("Training", "fer3.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),  # no_majority: 4 of 9
    ("Training", "fer4.png", [5, 1, 1, 1, 1, 1, 0, 0, 0, 0]),  # neutral once 1-votes go
    ("Training", "fer5.png", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),  # tie: no_majority
    ("PublicTest", "fer6.png", [0, 0, 0, 0, 3, 0, 0, 6, 1, 0]),  # contempt
    ("PublicTest", "", [0, 0, 7, 0, 0, 0, 3, 0, 0, 0]),  # no_image
    ("PublicTest", "fer8.png", [0, 0, 0, 0, 0, 9, 0, 0, 0, 0]),  # disgust, 9 votes
]


def images(n: int) -> np.ndarray:
    """``n`` distinct 48x48 uint8 images (the first two pixels number them: the pattern alone
    repeats every 256 images)."""
    pictures = (
        (np.arange(n * 2304).reshape(n, 48, 48) * 7 + np.arange(n)[:, None, None]) % 256
    ).astype(np.uint8)
    pictures[:, 0, 0], pictures[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return pictures


def write_fer2013(path: Path, usages: list[str]) -> Path:
    lines = ["emotion,pixels,Usage"]
    for index, (usage, image) in enumerate(zip(usages, images(len(usages)), strict=True)):
        lines.append(f"{index % 7},{' '.join(map(str, image.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ferplus(path: Path, rows=ROWS, header: str = FERPLUS_HEADER) -> Path:
    lines = [header] + [
        f"{usage},{name},{','.join(map(str, votes))}" for usage, name, votes in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    fer = write_fer2013(tmp_path / "fer2013.csv", [usage for usage, _, _ in ROWS])
    return fer, write_ferplus(tmp_path / "fer2013new.csv")


def test_majority_labels_distribution_and_exclusions(files):
    data = load_ferplus(*files)
    assert data.class_names == FERPLUS_CLASSES
    assert data.splits == ("Training", "PublicTest")
    assert data.source == str(files[0]) and data.ferplus_source == str(files[1])
    train, test = data.train, data.public_test
    assert train.usage == "Training" and test.usage == "PublicTest"
    assert train.rows.tolist() == [0, 4] and test.rows.tolist() == [6, 8]
    assert train.target.tolist() == [1, 0] and test.target.tolist() == [7, 5]
    assert train.target.dtype == np.int64 and train.rows.dtype == np.int64
    np.testing.assert_array_equal(train.images, images(9)[[0, 4]])
    np.testing.assert_array_equal(test.votes, np.array([ROWS[6][2], ROWS[8][2]]))
    np.testing.assert_allclose(test.distribution[0], [0, 0, 0, 0, 1 / 3, 0, 0, 2 / 3])
    np.testing.assert_allclose(train.distribution[1], [0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0, 0])
    assert train.distribution.shape == (2, 8)
    expected = {
        "Training": {"not_a_face": [1], "unknown": [2], "no_majority": [3, 5], "no_image": []},
        "PublicTest": {"not_a_face": [], "unknown": [], "no_majority": [], "no_image": [7]},
    }
    for split in (train, test):
        assert tuple(split.excluded) == EXCLUSION_REASONS
        assert {k: v.tolist() for k, v in split.excluded.items()} == expected[split.usage]
        assert data.excluded_counts[split.usage] == {
            k: len(v) for k, v in expected[split.usage].items()
        }
    assert "Training (2 kept; excluded: not_a_face 1, unknown 1, no_majority 2)" in data.DESCR


def test_split_selection_and_column_order(files, tmp_path):
    order = [0, 1, *range(11, 1, -1)]  # vote columns reversed
    header = ",".join(np.array(FERPLUS_HEADER.split(","))[order])
    shuffled = [(u, n, list(np.array([u, n, *v], dtype=object)[order][2:])) for u, n, v in ROWS]
    reordered = write_ferplus(tmp_path / "reordered.csv", shuffled, header)
    data = load_ferplus(files[0], reordered, splits=["public_test"])
    assert data.splits == ("PublicTest",) and "train" not in data
    reference = load_ferplus(*files).public_test
    for key in ("target", "rows", "votes", "distribution"):
        np.testing.assert_array_equal(data.public_test[key], reference[key])
    assert data.excluded_counts == {
        "PublicTest": load_ferplus(*files).excluded_counts["PublicTest"]
    }


def third_row(votes: list) -> list:
    """``ROWS`` with the votes of data row 2 (CSV line 4) replaced."""
    return [*ROWS[:2], ("Training", "fer2.png", votes), *ROWS[3:]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (ROWS[:-1], r"8 rows but the FER2013 file .* has 9 \(Training 6, PublicTest 3\)"),
        (
            [*ROWS[:3], ("PublicTest", *ROWS[3][1:]), *ROWS[4:]],
            r"differ on 1 row\(s\), first at data row 3 \(FER2013 'Training', FER\+ 'PublicTest'\)",
        ),
        (
            third_row(["a", *ROWS[2][2][1:]]),
            r"line 4 \(data row 2\): the 'neutral' votes must be a non-negative integer.*'a'",
        ),
        (third_row([-1, *ROWS[2][2][1:]]), r"line 4 .*'neutral' votes .*'-1'"),
        (third_row([1.5, *ROWS[2][2][1:]]), r"line 4 .*'neutral' votes .*'1.5'"),
        (third_row(ROWS[2][2][:-1]), r"line 4 .* 11 comma-separated field\(s\); expected 12"),
        (third_row([0] * 10), r"line 4 .* has no votes at all"),
    ],
)
def test_misaligned_or_malformed_ferplus_file(files, tmp_path, rows, message):
    bad = write_ferplus(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=message):
        load_ferplus(files[0], bad)


def test_bad_header_empty_file_missing_file_and_folder(files, tmp_path):
    header = FERPLUS_HEADER.replace(",NF", ",notface")
    with pytest.raises(ValueError, match=r"line 1: the header lacks column\(s\) \['NF'\]"):
        load_ferplus(files[0], write_ferplus(tmp_path / "h.csv", header=header))
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="is empty"):
        load_ferplus(files[0], tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="header but no data rows"):
        load_ferplus(files[0], write_ferplus(tmp_path / "head.csv", rows=[]))
    with pytest.raises(FileNotFoundError, match="fer2013new.csv"):
        load_ferplus(files[0], tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="is a folder; .* pass that CSV"):
        load_ferplus(tmp_path, files[1])


def test_load_dataset_selects_labels(files):
    fer = load_dataset("fer2013", files[0], splits=["Training"])
    assert fer.class_names == FER2013_CLASSES
    np.testing.assert_array_equal(fer.train.target, load_fer2013(files[0]).train.target)
    plus = load_dataset("ferplus", *files)
    assert plus.class_names == FERPLUS_CLASSES and plus.train.target.tolist() == [1, 0]
    with pytest.raises(ValueError, match="needs ferplus_csv"):
        load_dataset("ferplus", files[0])
    with pytest.raises(ValueError, match="only used with dataset='ferplus'"):
        load_dataset("fer2013", *files)
    with pytest.raises(ValueError, match=r"Unknown dataset 'fer\+'"):
        load_dataset("fer+", *files)


def test_shared_files_follow_barsoum_majority_counts(fer2013_csv):
    data = load_ferplus(fer2013_csv, shared_path("data/ferplus/fer2013new.csv"))
    # Barsoum et al. report 25,045 Training (train) and 3,191 PublicTest (valid) images.
    assert np.bincount(data.train.target).tolist() == [8740, 7287, 3149, 3014, 2100, 119, 532, 119]
    assert np.bincount(data.public_test.target).tolist() == [1182, 865, 415, 351, 287, 24, 62, 13]
    assert data.excluded_counts == {
        "Training": {"not_a_face": 150, "unknown": 76, "no_majority": 3423, "no_image": 0},
        "PublicTest": {"not_a_face": 10, "unknown": 13, "no_majority": 367, "no_image": 0},
    }
    n_rows = 28709 + 3589
    every_row = [data.train.rows, data.public_test.rows]
    every_row += [
        rows for split in (data.train, data.public_test) for rows in split.excluded.values()
    ]
    assert np.array_equal(np.sort(np.concatenate(every_row)), np.arange(n_rows))
    np.testing.assert_allclose(data.train.distribution.sum(axis=1), 1.0)
