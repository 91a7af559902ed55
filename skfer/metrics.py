"""Standard classification metrics of FER2013 predictions, labelled with their split.

``evaluate`` scores the predicted classes (the argmax of the softmax output) against the
true labels with ``sklearn.metrics``: accuracy, macro-averaged precision, recall and F1
(every class counts the same, ``zero_division=0``), the recall of each class and the
confusion matrix. Every result names the model and the split its numbers come from
(``"PublicTest"``, ``"PrivateTest"``, ...), so that numbers of different splits are never
compared by accident.

The study that skfer reproduces reports a precision and a recall of about 0.81 next to an
accuracy of 0.68. Standard metrics of the same softmax predictions cannot give that: with
one predicted class per image, micro-averaged precision and recall and support-weighted
recall all equal the accuracy, and macro recall would exceed the accuracy only if the rare
classes were recognised far better than the common ones, the opposite of FER2013 models
(the largest class, happy, is the easiest; disgust and fear are among the hardest). So
skfer does not try to match those two numbers: it reports standard macro precision, recall
and F1, and the split of every number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from .datasets import FER2013_CLASSES

_METRIC_COLUMNS = (
    ("accuracy", "accuracy"),
    ("precision (macro)", "precision_macro"),
    ("recall (macro)", "recall_macro"),
    ("F1 (macro)", "f1_macro"),
)
_REQUIRED_KEYS = ("model", "split", "n_samples", "recall_per_class") + tuple(
    key for _, key in _METRIC_COLUMNS
)


def evaluate(
    y_true,
    y_pred,
    *,
    model: str,
    split: str,
    class_names: Sequence[str] | None = None,
    labels=None,
) -> dict:
    """Score predicted classes against the true ones.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted class labels.
    model : str
        Name of the model, reported as is.
    split : str
        Name of the split the samples come from, e.g. ``"PublicTest"``.
    class_names : sequence of str, optional
        Name of each label in ``labels``, in the same order. Default: the FER2013 class
        names when the labels are integers in 0..6, else ``str(label)``.
    labels : array-like, optional
        Classes to average over and to show in the confusion matrix, in order. Default:
        the sorted union of ``y_true`` and ``y_pred``.

    Returns
    -------
    dict
        JSON-serialisable: ``model``, ``split``, ``n_samples``, ``accuracy``,
        ``precision_macro``, ``recall_macro``, ``f1_macro``, ``recall_per_class`` (class
        name to recall) and ``confusion_matrix`` (rows true, columns predicted).
    """
    if not isinstance(split, str) or not split:
        raise ValueError(
            "split must name the split the predictions come from, e.g. split='PublicTest'. "
            f"Received: split={split!r}"
        )
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(
            "y_true and y_pred must have one entry per sample. "
            f"Received: len(y_true)={len(y_true)}, len(y_pred)={len(y_pred)}"
        )
    if len(y_true) == 0:
        raise ValueError("evaluate needs at least one sample. Received: 0 samples")
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    names = _class_names(labels, class_names)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    _, per_class_recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "model": model,
        "split": split,
        "n_samples": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "recall_per_class": {
            name: float(value) for name, value in zip(names, per_class_recall, strict=True)
        },
        "confusion_matrix": matrix.tolist(),
    }


def _class_names(labels: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    """Return the display name of each label (FER2013 names for integer labels 0..6)."""
    if class_names is not None:
        if len(class_names) != len(labels):
            raise ValueError(
                "class_names must name each label, in the order of labels; to name the "
                "classes 0..n-1 when some are missing from the data, pass "
                "labels=range(len(class_names)). "
                f"Received: {len(class_names)} class_names for labels {labels.tolist()}"
            )
        return [str(name) for name in class_names]
    if np.issubdtype(labels.dtype, np.integer) and np.all(
        (labels >= 0) & (labels < len(FER2013_CLASSES))
    ):
        return [FER2013_CLASSES[label] for label in labels]
    return [str(label) for label in labels.tolist()]


def results_table(results: Sequence[dict], *, digits: int = 4) -> str:
    """Format results of :func:`evaluate` as a Markdown table.

    Parameters
    ----------
    results : sequence of dict
        Results of :func:`evaluate`; extra keys are ignored, except ``note``, shown in a
        last column when any result has one.
    digits : int, default=4
        Decimals of the metrics.

    Returns
    -------
    str
        One row per result: model, split, n, accuracy, macro precision, recall and F1,
        then the recall of each class (``recall <class>``, blank where a result lacks it).
    """
    for index, result in enumerate(results):
        missing = [key for key in _REQUIRED_KEYS if key not in result]
        if missing:
            raise ValueError(
                f"results[{index}] is not a result of skfer.metrics.evaluate; pass the dicts "
                f"evaluate returns. Received: missing keys {missing}"
            )
    class_names = list(dict.fromkeys(name for r in results for name in r["recall_per_class"]))
    with_note = any("note" in result for result in results)
    header = ["model", "split", "n", *(title for title, _ in _METRIC_COLUMNS)]
    header += [f"recall {name}" for name in class_names] + (["note"] if with_note else [])
    lines = [_table_row(header), _table_row(["---"] * len(header))]
    for result in results:
        cells = [str(result["model"]), str(result["split"]), str(result["n_samples"])]
        cells += [f"{result[key]:.{digits}f}" for _, key in _METRIC_COLUMNS]
        recalls = result["recall_per_class"]
        cells += [f"{recalls[name]:.{digits}f}" if name in recalls else "" for name in class_names]
        cells += [str(result.get("note", ""))] if with_note else []
        lines.append(_table_row(cells))
    return "\n".join(lines) + "\n"


def _table_row(cells: Sequence[str]) -> str:
    """Join cells into a Markdown table row, escaping pipes."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def save_results(results: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write results to a JSON file, ``{"skfer_version": ..., "results": [...]}``.

    Parameters
    ----------
    results : sequence of dict
        JSON-serialisable results, e.g. of :func:`evaluate`.
    path : str or os.PathLike
        File to write; its parent folders are created.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    envelope = {"skfer_version": __version__, "results": list(results)}
    path.write_text(json.dumps(envelope, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def load_results(path: str | os.PathLike) -> list[dict]:
    """Read results written by :func:`save_results`.

    Parameters
    ----------
    path : str or os.PathLike
        JSON file written by :func:`save_results`.

    Returns
    -------
    list of dict
        The results, in the order saved.
    """
    envelope = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(envelope, dict) or not isinstance(envelope.get("results"), list):
        raise ValueError(
            f"{path} is not a results file of skfer.metrics.save_results; write it with "
            "save_results. Received: JSON without a 'results' list"
        )
    return envelope["results"]
