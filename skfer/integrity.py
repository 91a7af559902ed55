"""Integrity of loaded FER2013 data: exact duplicates, conflicting labels, blank images.

:func:`fer2013_integrity` reports exact duplicates (within and across splits),
duplicates with conflicting labels and blank images of a loaded dataset, and
:func:`drop_test_duplicates` removes from Training the images that have an exact copy
in a test split (an opt-in leakage filter; :func:`~skfer.datasets.load_fer2013` keeps
every row).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.utils import Bunch

from .usage import SPLIT_ATTRIBUTES, received

__all__ = [
    "IntegrityReport",
    "Member",
    "drop_test_duplicates",
    "fer2013_integrity",
    "has_copy_in",
    "image_ids",
]

Member = tuple[str, int]
"""One image of a loaded dataset: ``(Usage name, row)``, e.g. ``("PublicTest", 28712)``."""


@dataclass(frozen=True)
class IntegrityReport:
    """Exact duplicates, conflicting labels and blank images of a loaded FER2013 Bunch.

    Members are ``(Usage name, row)`` pairs, ``row`` being the split's ``rows`` entry
    (the 0-based CSV data row). Groups are tuples of members sorted by row, and groups
    are sorted by their first row.

    Attributes
    ----------
    n_images, n_distinct : int
        Number of images in all splits, and of distinct images (byte-for-byte).
    duplicate_groups : tuple of tuple of Member
        Every set of two or more identical images.
    within_split_groups : dict of str to int
        For each split present, the number of groups whose members all lie in it.
    cross_split_groups : dict of tuple of str to int
        Number of groups spanning two or more splits, keyed by the splits they span
        (e.g. ``("Training", "PublicTest")``); only combinations that occur.
    test_images_in_train : dict of str to int
        For each test split present, how many of its images have an exact copy in
        Training (0 where Training is not loaded).
    conflicting_groups : tuple of tuple of Member
        The duplicate groups whose members carry two or more different labels.
    blank, all_black : tuple of Member
        Constant images (all pixels equal), and those of them that are all 0.
    """

    n_images: int
    n_distinct: int
    duplicate_groups: tuple[tuple[Member, ...], ...]
    within_split_groups: dict[str, int]
    cross_split_groups: dict[tuple[str, ...], int]
    test_images_in_train: dict[str, int]
    conflicting_groups: tuple[tuple[Member, ...], ...]
    blank: tuple[Member, ...]
    all_black: tuple[Member, ...]

    def summary(self) -> str:
        """Return the counts as a few lines of text."""
        within = ", ".join(f"{name} {n}" for name, n in self.within_split_groups.items())
        cross = ", ".join(f"{' & '.join(key)} {n}" for key, n in self.cross_split_groups.items())
        in_train = ", ".join(f"{name} {n}" for name, n in self.test_images_in_train.items())
        return "\n".join(
            [
                f"FER2013 integrity: {self.n_images} images, {self.n_distinct} distinct.",
                f"Exact-duplicate groups: {len(self.duplicate_groups)}; within one split: "
                f"{within}; across splits: {sum(self.cross_split_groups.values())}"
                + (f" ({cross})." if cross else "."),
                f"Test images with an exact copy in Training: {in_train or 'no test split'}.",
                f"Duplicate groups with conflicting labels: {len(self.conflicting_groups)}.",
                f"Blank (constant) images: {len(self.blank)}, of which all-black: "
                f"{len(self.all_black)}.",
            ]
        )


def fer2013_integrity(data: Bunch) -> IntegrityReport:
    """Find exact duplicates, conflicting labels and blank images in loaded FER2013 data.

    Parameters
    ----------
    data : sklearn.utils.Bunch
        As returned by :func:`~skfer.datasets.load_fer2013`: one Bunch per split (``train``,
        ``public_test``, ``private_test``) with ``images``, ``target`` and ``rows``.

    Returns
    -------
    IntegrityReport
        The duplicate groups and blank images, with their counts; ``summary()`` gives
        them as text. Images are compared byte-for-byte, all splits at once.
    """
    names, code, rows, target, flat = _pool(data)
    image_id = image_ids(flat)
    n_ids = int(image_id.max(initial=-1)) + 1
    members = np.flatnonzero(np.bincount(image_id, minlength=n_ids)[image_id] > 1)
    members = members[np.lexsort((code[members], rows[members], image_id[members]))]
    groups = (
        np.split(members, np.flatnonzero(np.diff(image_id[members])) + 1) if members.size else []
    )
    groups.sort(key=lambda group: (rows[group[0]], code[group[0]]))
    span = [tuple(np.unique(code[group]).tolist()) for group in groups]
    cross = Counter(codes for codes in span if len(codes) > 1)
    in_train = np.zeros(n_ids, dtype=bool)
    if "Training" in names:
        in_train[image_id[code == names.index("Training")]] = True
    low, high = flat.min(axis=1), flat.max(axis=1)
    blank = np.flatnonzero(low == high)
    return IntegrityReport(
        n_images=int(code.size),
        n_distinct=n_ids,
        duplicate_groups=tuple(_members(names, code, rows, group) for group in groups),
        within_split_groups={name: span.count((c,)) for c, name in enumerate(names)},
        cross_split_groups={
            tuple(names[c] for c in codes): n for codes, n in sorted(cross.items())
        },
        test_images_in_train={
            name: int(in_train[image_id[code == c]].sum())
            for c, name in enumerate(names)
            if name != "Training"
        },
        conflicting_groups=tuple(
            _members(names, code, rows, group)
            for group in groups
            if np.unique(target[group]).size > 1
        ),
        blank=_members(names, code, rows, blank),
        all_black=_members(names, code, rows, blank[high[blank] == 0]),
    )


def drop_test_duplicates(data: Bunch) -> tuple[Bunch, np.ndarray]:
    """Remove from Training every image that has an exact copy in a test split.

    An opt-in leakage filter: train on the result and compare with training on ``data``
    to measure how much the copies inflate test scores. ``data`` is not modified.

    Parameters
    ----------
    data : sklearn.utils.Bunch
        As returned by :func:`~skfer.datasets.load_fer2013`, with a ``train`` split.

    Returns
    -------
    filtered : sklearn.utils.Bunch
        A copy of ``data`` whose ``train`` split lacks the images that are byte-for-byte
        identical to an image of ``public_test`` or ``private_test``; other splits are
        shared with ``data``, and ``DESCR`` says how many rows were dropped.
    dropped_rows : numpy.ndarray
        The ``rows`` (0-based CSV data rows, int64, ascending) of the dropped Training
        images; empty when no test split is loaded.

    Raises
    ------
    ValueError
        If ``data`` has no ``train`` split.
    """
    if "train" not in data:
        raise ValueError(
            "drop_test_duplicates needs the Training split; load it with "
            "load_fer2013(path) or splits=[..., 'Training']. "
            + received(str([key for key in SPLIT_ATTRIBUTES.values() if key in data]))
        )
    names, code, _, _, flat = _pool(data)
    image_id = image_ids(flat)
    in_test = np.zeros(image_id.size, dtype=bool)
    in_test[image_id[code != names.index("Training")]] = True
    drop = in_test[image_id[code == names.index("Training")]]
    train = data.train
    filtered = Bunch(**data)
    filtered.train = Bunch(
        **{
            key: value[~drop] if isinstance(value, np.ndarray) else value
            for key, value in train.items()
        }
    )
    tests = [name for name in names if name != "Training"]
    filtered.DESCR = (
        f"{data.get('DESCR', '')} drop_test_duplicates removed {int(drop.sum())} Training "
        f"image(s) with an exact copy in {' or '.join(tests) or 'a test split (none loaded)'}; "
        f"{int((~drop).sum())} remain."
    ).lstrip()
    return filtered, np.sort(train.rows[drop]).astype(np.int64)


def _pool(data: Bunch) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack the loaded splits: ``(Usage names, split code, rows, target, flat images)``."""
    names = tuple(name for name, attribute in SPLIT_ATTRIBUTES.items() if attribute in data)
    if not names:
        raise ValueError(
            f"No FER2013 split in the Bunch; expected at least one of "
            f"{list(SPLIT_ATTRIBUTES.values())} as returned by load_fer2013. "
            + received(str(list(data)))
        )
    splits = [data[SPLIT_ATTRIBUTES[name]] for name in names]
    code = np.concatenate(
        [np.full(split.target.size, c, dtype=np.int64) for c, split in enumerate(splits)]
    )
    rows = np.concatenate([np.asarray(split.rows, dtype=np.int64) for split in splits])
    target = np.concatenate([np.asarray(split.target) for split in splits])
    flat = np.concatenate([split.images.reshape(split.target.size, -1) for split in splits])
    return names, code, rows, target, flat


def image_ids(images: np.ndarray) -> np.ndarray:
    """Number the distinct images 0, 1, ...: identical images (byte for byte) share a number.

    Parameters
    ----------
    images : ndarray of shape (n, ...)
        Images of one dtype and shape.

    Returns
    -------
    ndarray of shape (n,)
        The number of each image's group of identical images.
    """
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    keys = flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize))).ravel()
    return np.unique(keys, return_inverse=True)[1].ravel()


def has_copy_in(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which of ``images`` have an identical copy (byte for byte) among ``reference``.

    Parameters
    ----------
    images, reference : ndarray of shape (n, ...) and (m, ...)
        Images of the same dtype and shape, e.g. a test split and Training.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if images.shape[1:] != reference.shape[1:] or images.dtype != reference.dtype:
        raise ValueError(
            "images and reference must share one image shape and dtype to be compared byte "
            f"for byte. Received: {images.shape[1:]} {images.dtype} and "
            f"{reference.shape[1:]} {reference.dtype}"
        )
    ids = image_ids(np.concatenate([images, reference]))
    in_reference = np.zeros(ids.max(initial=-1) + 1, dtype=bool)
    in_reference[ids[len(images) :]] = True
    return in_reference[ids[: len(images)]]


def _members(
    names: tuple[str, ...], code: np.ndarray, rows: np.ndarray, index: np.ndarray
) -> tuple[Member, ...]:
    """Return the images at ``index`` of the pooled splits as ``(Usage name, row)`` pairs."""
    return tuple(
        (names[c], r) for c, r in zip(code[index].tolist(), rows[index].tolist(), strict=True)
    )
