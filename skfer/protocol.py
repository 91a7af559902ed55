"""The evaluation protocol of a run: which images serve which purpose, with no leaks.

FER2013 holds exact copies of the same face: within Training, and across splits (280 of the
3,589 PublicTest images have a byte-identical copy in Training). A held-out image whose copy
trains a model inflates every held-out figure, and copies with different labels teach both.
:func:`split_for_run` therefore

- drops the Training images whose copies disagree on the label (all copies: which label is
  right cannot be known), and counts them;
- splits the rest *by image*: all copies of an image fall into one part;
- gives each part one purpose: ``fit`` trains the members, ``stop`` early-stops them and
  chooses the best base model, ``stack`` selects the ensemble's members (the first: the base
  model most accurate there) and trains the stacking MLP; no image of ``stack`` has reached
  a member's training or stopping;
- marks, in every test split, the images that have a copy anywhere in Training, so that each
  test split is scored twice: as published, and without those images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from .integrity import has_copy_in, image_ids

__all__ = ["Part", "RunSplits", "TestSplit", "split_by_image", "split_for_run", "stratified_rows"]

WITHOUT_COPIES = "without Training copies"
"""Appended to a test split's name for its view without the images that have a copy in
Training."""


@dataclass(frozen=True)
class Part:
    """Images with one purpose in a run.

    Attributes
    ----------
    images : ndarray
        The images.
    target : ndarray of shape (n,)
        Their labels.
    distribution : ndarray of shape (n, n_classes) or None
        Their vote distributions (FER+), where the dataset has them.
    """

    images: np.ndarray
    target: np.ndarray
    distribution: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class TestSplit:
    """A split that is only ever predicted.

    Attributes
    ----------
    name : str
        Its name in the tables, e.g. ``"PublicTest"``.
    images, target : ndarray
        The images and labels.
    in_training : ndarray of bool
        Which images have an exact copy in Training.
    """

    name: str
    images: np.ndarray
    target: np.ndarray
    in_training: np.ndarray

    def views(self) -> dict[str, np.ndarray]:
        """The two ways it is scored, by name: every image (as published), and only the
        images without a copy in Training; each as the rows it keeps."""
        return {
            self.name: np.arange(len(self.target)),
            f"{self.name} {WITHOUT_COPIES}": np.flatnonzero(~self.in_training),
        }


@dataclass(frozen=True)
class RunSplits:
    """The parts of Training and the test splits of a run, with the counts that explain them.

    Attributes
    ----------
    fit, stop, stack : Part
        Training's parts: to train the members, to early-stop them and choose the best base
        model, to select the ensemble's members and train the stacker.
    tests : tuple of TestSplit
        The splits that are only predicted.
    counts : dict
        ``conflicting_dropped`` (Training images dropped because their copies disagree on the
        label), ``training_copies`` (Training images with another copy in Training), and
        per test split the images with a copy in Training.
    """

    fit: Part
    stop: Part
    stack: Part
    tests: tuple[TestSplit, ...]
    counts: dict


def stratified_rows(target, per_class: int, seed: int) -> np.ndarray:
    """Row numbers of at most ``per_class`` images of each class, drawn with ``seed``, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(target == k), min(per_class, int((target == k).sum())), False
                )
                for k in np.unique(target)
            ]
        )
    )


def split_by_image(
    target: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], seed: int
) -> tuple[np.ndarray, ...]:
    """Split rows into a first part and one part per fraction, keeping each group in one part.

    Parameters
    ----------
    target : ndarray of shape (n,)
        Labels, one per group (the rows of a group share their label).
    groups : ndarray of shape (n,)
        Group number of each row (identical images share one).
    fractions : tuple of float
        Share of the groups in each part after the first, stratified by label.
    seed : int
        Seeds the split.

    Returns
    -------
    tuple of ndarray
        The sorted rows of each part: the rest first, then one per fraction.
    """
    numbers, first = np.unique(groups, return_index=True)
    labels = target[first]
    if (_labels_per_group(groups, target) > 1).any():
        raise ValueError(
            "Every group of identical images must carry one label to be split by image; drop "
            "the groups whose copies disagree first (split_for_run does)."
        )
    parts, rest, rest_labels, left = [], numbers, labels, 1.0
    for fraction in fractions:
        rest, taken, rest_labels, _ = train_test_split(
            rest, rest_labels, test_size=fraction / left, stratify=rest_labels, random_state=seed
        )
        parts.append(taken)
        left -= fraction
    return tuple(np.flatnonzero(np.isin(groups, part)) for part in [rest, *parts])


def split_for_run(
    train: Part,
    tests: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    stop_fraction: float,
    stack_fraction: float,
    seed: int,
    per_class: int | None = None,
) -> RunSplits:
    """Drop conflicting copies, split Training by image into fit / stop / stack, mark the test
    images that have a copy in Training.

    Parameters
    ----------
    train : Part
        All Training images (and their vote distributions, if any).
    tests : dict of str to (images, target)
        The test splits, by name.
    stop_fraction, stack_fraction : float
        Shares of the (kept) Training images in the stopping and the stacking part.
    seed : int
        Seeds the subset and the split.
    per_class : int, optional
        Use at most this many Training images of each class (a smoke or quick run).

    Returns
    -------
    RunSplits
    """
    rows = np.arange(len(train))
    if per_class is not None:
        rows = stratified_rows(train.target, per_class, seed)
    groups = image_ids(train.images[rows])
    sizes = np.bincount(groups)
    conflicting = _labels_per_group(groups, train.target[rows])[groups] > 1
    kept, groups = rows[~conflicting], groups[~conflicting]
    parts = split_by_image(train.target[kept], groups, (stop_fraction, stack_fraction), seed)

    def part(chosen: np.ndarray) -> Part:
        index = kept[chosen]
        distribution = None if train.distribution is None else train.distribution[index]
        return Part(train.images[index], train.target[index], distribution)

    test_splits = tuple(
        TestSplit(name, images, target, has_copy_in(images, train.images))
        for name, (images, target) in tests.items()
    )
    counts = {
        "training_images": int(rows.size),
        "conflicting_dropped": int(conflicting.sum()),
        "training_copies": int((sizes[groups] > 1).sum()),
        "test_images_with_a_training_copy": {
            split.name: int(split.in_training.sum()) for split in test_splits
        },
    }
    fit, stop, stack = (part(chosen) for chosen in parts)
    return RunSplits(fit, stop, stack, test_splits, counts)


def _labels_per_group(groups: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The number of different labels in each group (indexed by group number)."""
    _, codes = np.unique(target, return_inverse=True)
    pairs = np.unique(np.stack([groups, codes.ravel()]), axis=1)
    return np.bincount(pairs[0], minlength=int(groups.max(initial=-1)) + 1)
