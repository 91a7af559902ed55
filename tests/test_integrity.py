"""Tests for :func:`skfer.integrity.fer2013_integrity` and :func:`drop_test_duplicates`."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.utils import Bunch

import skfer.datasets
import skfer.integrity
from skfer.datasets import SPLIT_ATTRIBUTES
from skfer.integrity import IntegrityReport, drop_test_duplicates, fer2013_integrity


def naive_integrity(data: Bunch) -> dict:
    """Recount everything with plain Python: a dict from image bytes to its members."""
    by_bytes: dict[bytes, list[tuple[str, int, int]]] = {}
    blank, all_black = set(), set()
    for usage, attribute in SPLIT_ATTRIBUTES.items():
        if attribute not in data:
            continue
        split = data[attribute]
        for image, label, row in zip(
            split.images, split.target.tolist(), split.rows.tolist(), strict=True
        ):
            key = image.tobytes()
            by_bytes.setdefault(key, []).append((usage, row, label))
            if key == key[:1] * len(key):
                blank.add((usage, row))
                if key[0] == 0:
                    all_black.add((usage, row))
    groups = [members for members in by_bytes.values() if len(members) > 1]
    spans = [{usage for usage, _, _ in members} for members in groups]
    test_in_train: dict[str, int] = {}
    for members, span in zip(groups, spans, strict=True):
        for usage, _, _ in members:
            if usage != "Training" and "Training" in span:
                test_in_train[usage] = test_in_train.get(usage, 0) + 1
    return dict(
        n_images=sum(len(members) for members in by_bytes.values()),
        n_distinct=len(by_bytes),
        groups={frozenset((u, r) for u, r, _ in members) for members in groups},
        conflicting={
            frozenset((u, r) for u, r, _ in members)
            for members in groups
            if len({label for _, _, label in members}) > 1
        },
        within={usage: sum(span == {usage} for span in spans) for usage in SPLIT_ATTRIBUTES},
        n_cross=sum(len(span) > 1 for span in spans),
        test_in_train=test_in_train,
        blank=blank,
        all_black=all_black,
    )


def assert_matches_naive(report: IntegrityReport, data: Bunch) -> None:
    naive = naive_integrity(data)
    assert report.n_images == naive["n_images"]
    assert report.n_distinct == naive["n_distinct"]
    assert {frozenset(group) for group in report.duplicate_groups} == naive["groups"]
    assert len(report.duplicate_groups) == len(naive["groups"])
    assert {frozenset(group) for group in report.conflicting_groups} == naive["conflicting"]
    for usage, count in report.within_split_groups.items():
        assert count == naive["within"][usage]
    assert sum(report.cross_split_groups.values()) == naive["n_cross"]
    for usage, count in report.test_images_in_train.items():
        assert count == naive["test_in_train"].get(usage, 0)
    assert set(report.blank) == naive["blank"] and len(report.blank) == len(naive["blank"])
    assert set(report.all_black) == naive["all_black"]
    for group in report.duplicate_groups:  # members sorted by row, groups by first row
        assert [row for _, row in group] == sorted(row for _, row in group)
    firsts = [group[0][1] for group in report.duplicate_groups]
    assert firsts == sorted(firsts)


# --------------------------------------------------------------- the real shared file


@pytest.fixture(scope="module")
def report(fer2013) -> IntegrityReport:
    return fer2013_integrity(fer2013)


def test_shared_file_integrity_counts(fer2013, report):
    # This file holds Training + PublicTest (32,298 of the 35,887 images), so its counts
    # are below the README's full-dataset figures (34,034 distinct, 1,516 groups, 57
    # conflicting); all 12 all-black images of FER2013 are in it.
    assert report.n_images == 32298
    assert report.n_distinct == 30766
    assert len(report.duplicate_groups) == 1273
    assert report.within_split_groups == {"Training": 987, "PublicTest": 16}
    assert report.cross_split_groups == {("Training", "PublicTest"): 270}
    assert report.test_images_in_train == {"PublicTest": 280}
    assert len(report.conflicting_groups) == 47
    assert len(report.blank) == len(report.all_black) == 12
    assert [usage for usage, _ in report.all_black].count("PublicTest") == 1
    assert_matches_naive(report, fer2013)


def test_shared_file_summary_and_speed(fer2013, report):
    text = report.summary()
    for fragment in [
        "32298 images, 30766 distinct",
        "Exact-duplicate groups: 1273",
        "Training 987, PublicTest 16",
        "across splits: 270 (Training & PublicTest 270)",
        "exact copy in Training: PublicTest 280",
        "conflicting labels: 47",
        "Blank (constant) images: 12, of which all-black: 12",
    ]:
        assert fragment in text
    start = time.process_time()  # CPU time: wall-clock time depends on the machine's load
    fer2013_integrity(fer2013)
    assert time.process_time() - start < 30


def test_shared_file_drop_test_duplicates(fer2013):
    filtered, dropped = drop_test_duplicates(fer2013)
    test_images = {image.tobytes() for image in fer2013.public_test.images}
    train = fer2013.train
    assert train.rows.size == 28709  # the default loader and the input keep every row
    by_row = dict(zip(train.rows.tolist(), train.images, strict=True))
    assert dropped.dtype == np.int64 and np.all(np.diff(dropped) > 0)
    assert dropped.size == 351
    assert all(by_row[row].tobytes() in test_images for row in dropped.tolist())
    assert not any(image.tobytes() in test_images for image in filtered.train.images)
    np.testing.assert_array_equal(filtered.train.rows, np.setdiff1d(train.rows, dropped))
    keep = ~np.isin(train.rows, dropped)
    np.testing.assert_array_equal(filtered.train.images, train.images[keep])
    np.testing.assert_array_equal(filtered.train.target, train.target[keep])
    assert filtered.train.usage == "Training"
    assert filtered.public_test is fer2013.public_test
    assert filtered.splits == fer2013.splits
    assert "removed 351 Training image(s)" in filtered.DESCR and "28358 remain" in filtered.DESCR


# ------------------------------------------------------------------ synthetic Bunch


def make_split(usage: str, images: list[np.ndarray], labels: list[int], rows: list[int]) -> Bunch:
    return Bunch(
        images=np.array(images, dtype=np.uint8),
        target=np.array(labels, dtype=np.int64),
        rows=np.array(rows, dtype=np.int64),
        usage=usage,
    )


@pytest.fixture
def synthetic() -> Bunch:
    rng = np.random.default_rng(0)
    a, b, c, d, e, f, g = rng.integers(0, 256, (7, 48, 48), dtype=np.uint8)
    black, gray = np.zeros((48, 48), np.uint8), np.full((48, 48), 7, np.uint8)
    return Bunch(
        train=make_split(
            "Training",
            [a, b, a, black, c, gray, d, f, g],
            [0, 1, 0, 2, 3, 4, 5, 6, 6],
            list(range(9)),
        ),
        public_test=make_split("PublicTest", [c, black, e, f], [3, 6, 0, 6], [9, 10, 11, 12]),
        private_test=make_split("PrivateTest", [d, e, b, f], [2, 0, 1, 5], [13, 14, 15, 16]),
        splits=("Training", "PublicTest", "PrivateTest"),
    )


def test_synthetic_integrity(synthetic):
    report = fer2013_integrity(synthetic)
    assert report.n_images == 17 and report.n_distinct == 9
    assert report.duplicate_groups == (
        (("Training", 0), ("Training", 2)),
        (("Training", 1), ("PrivateTest", 15)),
        (("Training", 3), ("PublicTest", 10)),
        (("Training", 4), ("PublicTest", 9)),
        (("Training", 6), ("PrivateTest", 13)),
        (("Training", 7), ("PublicTest", 12), ("PrivateTest", 16)),
        (("PublicTest", 11), ("PrivateTest", 14)),
    )
    assert report.within_split_groups == {"Training": 1, "PublicTest": 0, "PrivateTest": 0}
    assert report.cross_split_groups == {
        ("Training", "PrivateTest"): 2,
        ("Training", "PublicTest"): 2,
        ("Training", "PublicTest", "PrivateTest"): 1,
        ("PublicTest", "PrivateTest"): 1,
    }
    assert report.test_images_in_train == {"PublicTest": 3, "PrivateTest": 3}
    assert report.conflicting_groups == (
        (("Training", 3), ("PublicTest", 10)),
        (("Training", 6), ("PrivateTest", 13)),
        (("Training", 7), ("PublicTest", 12), ("PrivateTest", 16)),
    )
    assert report.blank == (("Training", 3), ("Training", 5), ("PublicTest", 10))
    assert report.all_black == (("Training", 3), ("PublicTest", 10))
    assert_matches_naive(report, synthetic)
    assert report.summary().splitlines() == [
        "FER2013 integrity: 17 images, 9 distinct.",
        "Exact-duplicate groups: 7; within one split: Training 1, PublicTest 0, PrivateTest 0; "
        "across splits: 6 (Training & PublicTest 2, Training & PublicTest & PrivateTest 1, "
        "Training & PrivateTest 2, PublicTest & PrivateTest 1).",
        "Test images with an exact copy in Training: PublicTest 3, PrivateTest 3.",
        "Duplicate groups with conflicting labels: 3.",
        "Blank (constant) images: 3, of which all-black: 2.",
    ]


def test_synthetic_no_duplicates_single_split(synthetic):
    only_public = Bunch(public_test=synthetic.public_test)
    report = fer2013_integrity(only_public)
    assert report.n_distinct == report.n_images == 4
    assert report.duplicate_groups == report.conflicting_groups == ()
    assert report.cross_split_groups == {}
    assert report.test_images_in_train == {"PublicTest": 0}
    assert report.all_black == (("PublicTest", 10),)
    assert "across splits: 0." in report.summary()
    with pytest.raises(ValueError, match="No FER2013 split in the Bunch"):
        fer2013_integrity(Bunch(class_names=()))


def test_synthetic_drop_test_duplicates(synthetic):
    filtered, dropped = drop_test_duplicates(synthetic)
    assert dropped.tolist() == [1, 3, 4, 6, 7]  # a duplicate within Training (0, 2) stays
    assert filtered.train.rows.tolist() == [0, 2, 5, 8]
    np.testing.assert_array_equal(filtered.train.images, synthetic.train.images[[0, 2, 5, 8]])
    assert filtered.train.target.tolist() == [0, 0, 4, 6]
    assert synthetic.train.rows.size == 9  # the input is not modified
    assert filtered.private_test is synthetic.private_test
    assert "removed 5 Training image(s) with an exact copy in PublicTest or PrivateTest" in (
        filtered.DESCR
    )
    _, dropped = drop_test_duplicates(Bunch(train=synthetic.train))
    assert dropped.size == 0
    with pytest.raises(ValueError, match="needs the Training split"):
        drop_test_duplicates(Bunch(public_test=synthetic.public_test))


def test_integrity_names_stay_importable_from_datasets():
    from skfer.datasets import IntegrityReport as Report
    from skfer.datasets import drop_test_duplicates as drop

    assert Report is IntegrityReport and drop is drop_test_duplicates
    for name in skfer.integrity.__all__:
        assert getattr(skfer.datasets, name) is getattr(skfer.integrity, name)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        skfer.datasets.nonexistent  # noqa: B018
