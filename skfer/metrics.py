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

Error bars: ``bootstrap_interval`` gives a percentile bootstrap interval of the accuracy over
the test images, ``paired_difference`` the interval of the difference of two models' accuracies
on the same images (a paired bootstrap) with the exact McNemar test (``mcnemar_p_value``). On
the 3,589 images of a FER2013 test split a 95% interval of an accuracy near 0.66 reaches
about 0.015 either side, so a difference of half a point between two models is sampling noise.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import binom  # scipy is a dependency of scikit-learn
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from . import __version__
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
_PAIRED_KEYS = (
    "difference",
    "interval",
    "mcnemar_p_value",
    "a_only_correct",
    "b_only_correct",
    "n_samples",
    "confidence",
)
_CHUNK_ELEMENTS = 2**20  # resampled indices drawn at a time: 8 MiB of int64


def evaluate(
    y_true,
    y_pred,
    *,
    model: str,
    split: str,
    class_names: Sequence[str] | None = None,
    labels=None,
    interval: bool = False,
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
    interval : bool, default=False
        Also return ``accuracy_interval``, the 95% :func:`bootstrap_interval` of the accuracy
        (seeded, so repeatable), and ``confidence`` (0.95).

    Returns
    -------
    dict
        JSON-serialisable: ``model``, ``split``, ``n_samples``, ``accuracy``,
        ``precision_macro``, ``recall_macro``, ``f1_macro``, ``recall_per_class`` (class
        name to recall) and ``confusion_matrix`` (rows true, columns predicted); with
        ``interval=True`` also ``accuracy_interval`` (``[low, high]``) and ``confidence``.
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
    names = class_display_names(labels, class_names)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    _, per_class_recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    result = {
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
    if interval:
        result["accuracy_interval"] = list(bootstrap_interval(y_true, y_pred))
        result["confidence"] = 0.95
    return result


def bootstrap_interval(
    y_true,
    y_pred,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy over the test images.

    The images are resampled with replacement ``n_resamples`` times; the interval runs from
    the ``(1 - confidence) / 2`` to the ``(1 + confidence) / 2`` quantile of the accuracies of
    the resamples.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted class labels.
    confidence : float, default=0.95
        Coverage of the interval, strictly between 0 and 1.
    n_resamples : int, default=2000
        Number of bootstrap resamples.
    random_state : int, default=0
        Seed of :func:`numpy.random.default_rng`: the same seed gives the same interval.

    Returns
    -------
    tuple of float
        ``(low, high)``.
    """
    y_true, y_pred = _check_predictions(y_true=y_true, y_pred=y_pred)
    _check_bootstrap(confidence, n_resamples)
    return _percentile_interval(
        (y_true == y_pred).astype(np.int64), confidence, n_resamples, random_state
    )


def paired_difference(
    y_true,
    pred_a,
    pred_b,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: int = 0,
) -> dict:
    """Difference of two models' accuracies on the same images, with its error bars.

    The interval is a paired percentile bootstrap: each resample of the images scores both
    models, so the noise the two share (easy and hard images) cancels. The p-value is the
    exact McNemar test of :func:`mcnemar_p_value`.

    Parameters
    ----------
    y_true, pred_a, pred_b : array-like of shape (n_samples,)
        True class labels and the predictions of models a and b for the same images.
    confidence : float, default=0.95
        Coverage of the interval, strictly between 0 and 1.
    n_resamples : int, default=2000
        Number of bootstrap resamples.
    random_state : int, default=0
        Seed of :func:`numpy.random.default_rng`: the same seed gives the same interval.

    Returns
    -------
    dict
        JSON-serialisable: ``difference`` (accuracy of a minus accuracy of b), ``interval``
        (``[low, high]``), ``mcnemar_p_value``, ``a_only_correct`` and ``b_only_correct``
        (images only a, or only b, classifies right), ``n_samples`` and ``confidence``.
    """
    y_true, pred_a, pred_b = _check_predictions(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    _check_bootstrap(confidence, n_resamples)
    correct_a = (y_true == pred_a).astype(np.int64)
    correct_b = (y_true == pred_b).astype(np.int64)
    a_only, b_only = _discordant_counts(correct_a, correct_b)
    return {
        "difference": (a_only - b_only) / len(y_true),
        "interval": list(
            _percentile_interval(correct_a - correct_b, confidence, n_resamples, random_state)
        ),
        "mcnemar_p_value": _mcnemar(a_only, b_only),
        "a_only_correct": a_only,
        "b_only_correct": b_only,
        "n_samples": len(y_true),
        "confidence": float(confidence),
    }


def mcnemar_p_value(y_true, pred_a, pred_b) -> float:
    """Exact two-sided McNemar test that models a and b are equally accurate.

    Of the ``b`` images only model a classifies right and the ``c`` only model b does, ``b``
    follows Binomial(b + c, 0.5) when the models are equally accurate; the p-value is
    ``min(1, 2 * P(X <= min(b, c)))``, and 1.0 when no image tells the models apart.

    Parameters
    ----------
    y_true, pred_a, pred_b : array-like of shape (n_samples,)
        True class labels and the predictions of models a and b for the same images.

    Returns
    -------
    float
        The p-value.
    """
    y_true, pred_a, pred_b = _check_predictions(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    return _mcnemar(*_discordant_counts(y_true == pred_a, y_true == pred_b))


def paired_difference_markdown(label_a: str, label_b: str, result: dict, *, digits: int = 4) -> str:
    """Format a result of :func:`paired_difference` as one line of Markdown.

    Parameters
    ----------
    label_a, label_b : str
        Names of models a and b.
    result : dict
        Result of :func:`paired_difference`.
    digits : int, default=4
        Decimals of the difference and its interval.

    Returns
    -------
    str
        E.g. ``ensemble − best single: +0.0067 [−0.0012, +0.0145], McNemar p = 0.09
        (only ensemble right 120, only best single right 96, of 3589)``.
    """
    missing = [key for key in _PAIRED_KEYS if key not in result]
    if missing:
        raise ValueError(
            "result is not a result of skfer.metrics.paired_difference; pass the dict "
            f"paired_difference returns. Received: missing keys {missing}"
        )
    low, high = result["interval"]
    difference, low, high = (
        f"{value:+.{digits}f}".replace("-", "\u2212") for value in (result["difference"], low, high)
    )
    p_value = result["mcnemar_p_value"]
    p_text = "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"
    return (
        f"{label_a} \u2212 {label_b}: {difference} [{low}, {high}], McNemar {p_text} "
        f"(only {label_a} right {result['a_only_correct']}, only {label_b} right "
        f"{result['b_only_correct']}, of {result['n_samples']})"
    )


def _check_predictions(**arrays) -> list[np.ndarray]:
    """Return the label arrays, checked to be 1-D, non-empty and of one length."""
    arrays = {name: np.asarray(values) for name, values in arrays.items()}
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(
                f"{name} must hold one class label per sample; for probabilities pass "
                f"proba.argmax(axis=1). Received: {name} of shape {array.shape}"
            )
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        *first, last = lengths
        received = ", ".join(f"len({name})={length}" for name, length in lengths.items())
        raise ValueError(
            f"{', '.join(first)} and {last} must have one entry per sample; pass the labels "
            f"and predictions of the same images. Received: {received}"
        )
    if next(iter(lengths.values())) == 0:
        raise ValueError(
            "error bars need at least one sample; pass the labels and predictions of the "
            "test images. Received: 0 samples"
        )
    return list(arrays.values())


def _check_bootstrap(confidence, n_resamples) -> None:
    """Raise ValueError unless 0 < confidence < 1 and n_resamples is a positive integer."""
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, numbers.Real)
        or not 0 < confidence < 1
    ):
        raise ValueError(
            "confidence must be a number strictly between 0 and 1, e.g. confidence=0.95. "
            f"Received: confidence={confidence!r}"
        )
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, numbers.Integral)
        or n_resamples < 1
    ):
        raise ValueError(
            "n_resamples must be a positive integer, e.g. n_resamples=2000. "
            f"Received: n_resamples={n_resamples!r}"
        )


def _percentile_interval(
    values: np.ndarray, confidence: float, n_resamples: int, random_state
) -> tuple[float, float]:
    """Return the percentile bootstrap interval of the mean of integer ``values``."""
    rng = np.random.default_rng(random_state)
    n = len(values)
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].sum(axis=1) / n
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _discordant_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """Return the number of samples only a is right on, and only b is right on."""
    correct_a, correct_b = correct_a.astype(bool), correct_b.astype(bool)
    return int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))


def _mcnemar(a_only: int, b_only: int) -> float:
    """Return the exact two-sided McNemar p-value of the discordant counts."""
    if a_only + b_only == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(a_only, b_only), a_only + b_only, 0.5)))


def class_display_names(labels: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    """Return the display name of each label (FER2013 names for integer labels 0..6).

    Parameters
    ----------
    labels : numpy.ndarray
        The labels, in order.
    class_names : sequence of str or None
        Name of each label, in the same order; None names integer labels 0..6 after
        :data:`~skfer.datasets.FER2013_CLASSES` and other labels ``str(label)``.

    Returns
    -------
    list of str
        One name per label.
    """
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
        A result with ``accuracy_interval`` (``evaluate(..., interval=True)``) shows its
        accuracy as ``0.6556 [0.6400, 0.6710]``, and the accuracy column is then titled
        ``accuracy [95% interval]`` (``accuracy [interval]`` when the confidences differ or
        are missing).
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
    confidences = {r.get("confidence") for r in results if "accuracy_interval" in r}
    if confidences:
        level = next(iter(confidences)) if len(confidences) == 1 else None
        header[3] = f"accuracy [{100 * level:g}% interval]" if level else "accuracy [interval]"
    header += [f"recall {name}" for name in class_names] + (["note"] if with_note else [])
    lines = [_table_row(header), _table_row(["---"] * len(header))]
    for result in results:
        cells = [str(result["model"]), str(result["split"]), str(result["n_samples"])]
        cells += [f"{result[key]:.{digits}f}" for _, key in _METRIC_COLUMNS]
        if "accuracy_interval" in result:
            low, high = result["accuracy_interval"]
            cells[3] += f" [{low:.{digits}f}, {high:.{digits}f}]"
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
