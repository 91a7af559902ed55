"""FER+ (Barsoum et al. 2016): crowd-sourced labels for the FER2013 images.

FER+ relabelled the FER2013 images with the votes of 10 annotators each over 8 emotions,
``unknown`` (annotator unsure) and ``NF`` (not a face), in ``fer2013new.csv``, whose rows are
the rows of the Kaggle ``fer2013.csv`` in the same order. :func:`load_ferplus` pairs the two
files and gives each image its majority label (Barsoum's rule) and its vote distribution;
the rows without an emotion majority are reported with their reason, never dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .datasets import load_fer2013
from .errors import DataFileError
from .usage import SPLIT_ATTRIBUTES, check_splits, present_splits

__all__ = [
    "DATASETS",
    "EXCLUSION_REASONS",
    "FER2013_TO_FERPLUS",
    "FERPLUS_CLASSES",
    "fer2013_vote_distribution",
    "load_dataset",
    "load_ferplus",
]

FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
EXCLUSION_REASONS: tuple[str, ...] = ("not_a_face", "unknown", "no_majority", "no_image")
DATASETS: tuple[str, ...] = ("fer2013", "ferplus")
FER2013_TO_FERPLUS: dict[str, str] = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
"""FER+'s name of each FER2013 class (FER+'s eighth emotion, contempt, has no FER2013 class)."""

_VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
_USAGE, _IMAGE_NAME = "Usage", "Image name"
_HEADER = (_USAGE, _IMAGE_NAME, *_VOTE_COLUMNS)
_KEPT = -1  # reason code of a row that has an emotion majority and an image


def load_ferplus(
    fer2013_csv: str | os.PathLike,
    ferplus_csv: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
) -> Bunch:
    """Load the FER2013 images with their FER+ majority labels and vote distributions.

    A row's label follows Barsoum et al.'s ``majority`` mode (``src/ferplus.py`` of
    microsoft/FERPlus): votes of 1 are discarded as outliers, then the column (of all 10)
    with more than half of the remaining votes wins; a tie between two columns therefore
    has no winner. A row is excluded when the winner is ``NF`` (``"not_a_face"``) or
    ``unknown`` (``"unknown"``), when no column wins (``"no_majority"``), or when its
    ``Image name`` is empty although an emotion wins (``"no_image"``: FER+ dropped it).

    Parameters
    ----------
    fer2013_csv : str or os.PathLike
        The Kaggle ``fer2013.csv`` (plain or gzip), read by
        :func:`skfer.datasets.load_fer2013`. An image folder is refused: it has no row order.
    ferplus_csv : str or os.PathLike
        FER+'s ``fer2013new.csv``: header ``Usage,Image name,neutral,happiness,surprise,
        sadness,anger,disgust,fear,contempt,unknown,NF`` (columns in any order), one row
        per FER2013 row, in the same order.
    splits : sequence of str, optional
        Splits to return, as in :func:`~skfer.datasets.load_fer2013`. Default: all present.
        The two files are checked against each other on every row whatever the choice.

    Returns
    -------
    sklearn.utils.Bunch
        As :func:`~skfer.datasets.load_fer2013` returns, one Bunch per split (``train``,
        ``public_test``, ``private_test``) holding the kept rows: ``images`` (uint8,
        ``(n, 48, 48)``), ``target`` (int64 majority label, index into ``class_names``),
        ``distribution`` (float64, ``(n, 8)``: the 8 emotions' votes divided by their sum,
        in ``class_names`` order; ``unknown`` and ``NF`` votes left out), ``votes`` (int64,
        ``(n, 10)``, the raw votes of the 8 emotions, ``unknown`` and ``NF``), ``rows``
        (0-based CSV data row, the same in both files), ``usage``, and ``excluded``: a dict
        from each of :data:`EXCLUSION_REASONS` to the int64 ``rows`` excluded for it. Plus
        ``splits``, ``class_names`` (:data:`FERPLUS_CLASSES`), ``source`` (the FER2013
        file), ``ferplus_source``, ``excluded_counts`` (Usage name to reason to count) and
        ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If either file does not exist.
    ValueError
        If a file is malformed (the message names the line), or the two files do not
        align (row counts or a ``Usage`` differ), or a requested split is unknown or absent.
    """
    wanted = check_splits(splits)
    labels_path = _checked_pair(fer2013_csv, ferplus_csv)
    fer = load_fer2013(fer2013_csv)
    usage, image_names, votes = _read_ferplus_csv(labels_path)
    _check_alignment(fer, usage, labels_path, SPLIT_ATTRIBUTES)
    target, reason = _majority(votes, image_names)

    present = fer.splits
    wanted = present_splits(wanted, present, fer.source, splits)
    result = Bunch(class_names=FERPLUS_CLASSES, source=fer.source, ferplus_source=str(labels_path))
    kept_splits = tuple(name for name in present if name in wanted)
    result.excluded_counts = {}
    for name in kept_splits:
        split = fer[SPLIT_ATTRIBUTES[name]]
        rows = split.rows
        keep = reason[rows] == _KEPT
        emotion_votes = votes[rows[keep], : len(FERPLUS_CLASSES)]
        result[SPLIT_ATTRIBUTES[name]] = Bunch(
            images=np.ascontiguousarray(split.images[keep]),
            target=target[rows[keep]],
            distribution=emotion_votes / emotion_votes.sum(axis=1, keepdims=True),
            votes=votes[rows[keep]],
            rows=rows[keep],
            usage=name,
            excluded={
                why: rows[reason[rows] == code] for code, why in enumerate(EXCLUSION_REASONS)
            },
        )
        result.excluded_counts[name] = {
            why: int(excluded.size)
            for why, excluded in result[SPLIT_ATTRIBUTES[name]].excluded.items()
        }
    result.splits = kept_splits
    result.DESCR = _describe(result)
    return result


def load_dataset(
    dataset: str,
    fer2013_csv: str | os.PathLike,
    ferplus_csv: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] | None = None,
) -> Bunch:
    """Load FER2013 with its own labels (``"fer2013"``) or with FER+'s (``"ferplus"``).

    Parameters
    ----------
    dataset : {"fer2013", "ferplus"}
        Whose labels to use.
    fer2013_csv : str or os.PathLike
        The Kaggle ``fer2013.csv`` (or, for ``"fer2013"``, an image folder).
    ferplus_csv : str or os.PathLike, optional
        FER+'s ``fer2013new.csv``; required for ``"ferplus"``, refused for ``"fer2013"``.
    splits : sequence of str, optional
        Splits to return. Default: all present.

    Returns
    -------
    sklearn.utils.Bunch
        As :func:`~skfer.datasets.load_fer2013` or :func:`load_ferplus` returns; its
        ``class_names`` name the labels.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; use one of {list(DATASETS)}.")
    if dataset == "fer2013":
        if ferplus_csv is not None:
            raise ValueError(
                "ferplus_csv is only used with dataset='ferplus'; pass dataset='ferplus' to "
                f"train on FER+ labels, or drop ferplus_csv. Received: {os.fspath(ferplus_csv)!r}"
            )
        return load_fer2013(fer2013_csv, splits=splits)
    if ferplus_csv is None:
        raise ValueError("dataset='ferplus' needs ferplus_csv, the path of FER+'s fer2013new.csv.")
    return load_ferplus(fer2013_csv, ferplus_csv, splits=splits)


def fer2013_vote_distribution(
    fer2013_csv: str | os.PathLike, ferplus_csv: str | os.PathLike
) -> Bunch:
    """FER+'s votes as distributions over FER2013's seven classes, one per FER2013 row.

    The FER+ annotators' votes for the seven emotions that FER2013 also labels
    (:data:`FER2013_TO_FERPLUS`), divided by their sum; the votes for contempt, ``unknown``
    and ``NF`` are left out. A row with no vote for any of the seven has no distribution:
    its row is NaN and it is counted in ``no_votes``.

    Parameters
    ----------
    fer2013_csv : str or os.PathLike
        The Kaggle ``fer2013.csv`` (plain or gzip); an image folder is refused (it has no
        row order).
    ferplus_csv : str or os.PathLike
        FER+'s ``fer2013new.csv``, row-aligned with it (checked as :func:`load_ferplus` does).

    Returns
    -------
    sklearn.utils.Bunch
        ``distribution`` (float64, ``(n_rows, 7)``, columns in FER2013's class order, indexed
        by the 0-based CSV data row, as ``rows`` of :func:`~skfer.datasets.load_fer2013`),
        ``no_votes`` (int64 rows with no vote among the seven) and ``source`` (the FER+ file).

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_ferplus` does.
    """
    labels_path = _checked_pair(fer2013_csv, ferplus_csv)
    fer = load_fer2013(fer2013_csv)
    usage, _, votes = _read_ferplus_csv(labels_path)
    _check_alignment(fer, usage, labels_path, SPLIT_ATTRIBUTES)
    columns = [FERPLUS_CLASSES.index(FER2013_TO_FERPLUS[name]) for name in fer.class_names]
    seven = votes[:, columns].astype(np.float64)
    total = seven.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        distribution = np.where(total > 0, seven / total, np.nan)
    return Bunch(
        distribution=distribution,
        no_votes=np.flatnonzero(total[:, 0] == 0).astype(np.int64),
        source=str(labels_path),
    )


def _checked_pair(fer2013_csv: str | os.PathLike, ferplus_csv: str | os.PathLike) -> Path:
    """The FER+ file's path, once both files can pair row by row (the FER+ file exists, the
    FER2013 data is a CSV and not an image folder)."""
    labels_path = Path(ferplus_csv)
    if not labels_path.is_file():
        raise FileNotFoundError(
            f"FER+ labels not found at '{labels_path}'. Pass the path of FER+'s "
            "fer2013new.csv (github.com/microsoft/FERPlus)."
        )
    if Path(fer2013_csv).is_dir():
        raise DataFileError(
            f"'{os.fspath(fer2013_csv)}' is a folder; FER+ labels pair with the rows of the "
            "Kaggle fer2013.csv, so pass that CSV (plain or gzip)."
        )
    return labels_path


def _read_ferplus_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``fer2013new.csv`` into ``(usage, image names, votes)``, one entry per row."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFileError(
            f"'{path}' is empty; expected FER+'s fer2013new.csv with the header "
            f"'{','.join(_HEADER)}'. Re-download the file."
        )
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = [name.strip() for name in next(reader)]
    lower = [name.lower() for name in header]
    missing = [column for column in _HEADER if column.lower() not in lower]
    if missing:
        raise DataFileError(
            f"'{path}' line 1: the header lacks column(s) {missing}; expected FER+'s header "
            f"'{','.join(_HEADER)}'. Pass fer2013new.csv or fix its header. "
            f"Received: {','.join(header)!r}"
        )
    usage_at, name_at = lower.index(_USAGE.lower()), lower.index(_IMAGE_NAME.lower())
    vote_at = [lower.index(column.lower()) for column in _VOTE_COLUMNS]
    usage, image_names, votes = [], [], []
    for line, fields in enumerate(reader, start=2):
        where = f"'{path}' line {line} (data row {line - 2})"
        if len(fields) != len(header):
            raise DataFileError(
                f"{where} has {len(fields)} comma-separated field(s); expected {len(header)} "
                f"as in the header. Fix or remove the row. Received: {','.join(fields)[:80]!r}"
            )
        row_votes = []
        for column, at in zip(_VOTE_COLUMNS, vote_at, strict=True):
            value = fields[at].strip()
            if not (value.isascii() and value.isdigit()):
                raise DataFileError(
                    f"{where}: the {column!r} votes must be a non-negative integer (a count "
                    f"of annotators). Fix the row. Received: {value!r}"
                )
            row_votes.append(int(value))
        if sum(row_votes) == 0:
            raise DataFileError(
                f"{where} has no votes at all; every FER+ row holds the votes of about 10 "
                f"annotators. Fix the row. Received: {','.join(fields)!r}"
            )
        usage.append(fields[usage_at].strip())
        image_names.append(fields[name_at].strip())
        votes.append(row_votes)
    if not votes:
        raise DataFileError(
            f"'{path}' has a header but no data rows; expected one row per FER2013 image."
        )
    return np.array(usage), np.array(image_names), np.array(votes, dtype=np.int64)


def _check_alignment(fer: Bunch, usage: np.ndarray, labels_path: Path, attributes: dict) -> None:
    """Raise a ``ValueError`` unless FER+ row ``i`` has the Usage of FER2013 row ``i``."""
    fer_usage = np.empty(sum(fer[attributes[name]].rows.size for name in fer.splits), object)
    for name in fer.splits:
        fer_usage[fer[attributes[name]].rows] = name
    if fer_usage.size != usage.size:
        counts = ", ".join(f"{name} {int(np.sum(fer_usage == name))}" for name in fer.splits)
        ferplus_counts = ", ".join(
            f"{name} {int(np.sum(usage == name))}" for name in dict.fromkeys(usage.tolist())
        )
        raise DataFileError(
            f"The FER+ labels '{labels_path}' have {usage.size} rows but the FER2013 file "
            f"'{fer.source}' has {fer_usage.size} ({counts}); FER+ labels row i of the FER2013 "
            "CSV, so both must hold the same rows in the original order. Pass the "
            "fer2013new.csv and fer2013.csv of the same images (e.g. both with or both "
            f"without PrivateTest). Received: FER+ rows {ferplus_counts}"
        )
    differ = np.flatnonzero(fer_usage != usage)
    if differ.size:
        first = int(differ[0])
        raise DataFileError(
            f"The Usage columns of '{fer.source}' and '{labels_path}' differ on {differ.size} "
            f"row(s), first at data row {first} (FER2013 {fer_usage[first]!r}, FER+ "
            f"{str(usage[first])!r}); the files are not row-aligned. Pass the fer2013new.csv of "
            f"this FER2013 file, rows in the original order. Received: rows {differ[:10].tolist()}"
        )


def _majority(votes: np.ndarray, image_names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barsoum's majority label and the exclusion code (``_KEPT`` or an index into
    :data:`EXCLUSION_REASONS`) of each row; the label is -1 where the row is excluded."""
    counted = np.where(votes > 1, votes, 0)  # a single vote is an outlier
    winner = counted.argmax(axis=1)
    has_majority = 2 * counted.max(axis=1) > counted.sum(axis=1)
    code = EXCLUSION_REASONS.index
    reason = np.select(
        [
            ~has_majority,
            winner == _VOTE_COLUMNS.index("NF"),
            winner == _VOTE_COLUMNS.index("unknown"),
            image_names == "",
        ],
        [code("no_majority"), code("not_a_face"), code("unknown"), code("no_image")],
        default=_KEPT,
    )
    target = np.where(reason == _KEPT, winner, -1)
    return target.astype(np.int64), reason


def _describe(result: Bunch) -> str:
    """The ``DESCR`` of a :func:`load_ferplus` result."""
    parts = []
    for name in result.splits:
        excluded = ", ".join(f"{why} {n}" for why, n in result.excluded_counts[name].items() if n)
        parts.append(
            f"{name} ({result[SPLIT_ATTRIBUTES[name]].target.size} kept; excluded: "
            f"{excluded or 'none'})"
        )
    return (
        "FER2013 images with FER+ labels (Barsoum et al. 2016): the majority of 10 annotators' "
        f"votes over {len(FERPLUS_CLASSES)} emotions ({', '.join(FERPLUS_CLASSES)}), and the "
        f"vote distribution; images from '{result.source}', labels from "
        f"'{result.ferplus_source}'. Splits: {'; '.join(parts)}."
    )
