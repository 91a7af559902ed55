"""PNG figures of results: the normalised confusion matrix and the training curves.

matplotlib is optional (``pip install 'skfer[plots]'``) and imported only when a figure is
drawn. Figures are built as ``matplotlib.figure.Figure`` objects, outside pyplot, so no GUI
backend is touched and nothing stays registered once the PNG is written.
"""

from __future__ import annotations

import math
import numbers
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from .metrics import class_display_names

TITLE_CHARACTERS_PER_INCH = 8  # of the default 12 pt title font, with a margin

_DPI = 150


def plot_confusion_matrix(
    y_true,
    y_pred,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    labels=None,
    title: str | None = None,
    normalize: str | None = "true",
) -> Path:
    """Draw the confusion matrix of predictions and save it as a PNG.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted class labels.
    path : str or os.PathLike
        PNG file to write (``.png``); its parent folders are created.
    class_names : sequence of str, optional
        Name of each label in ``labels``, in the same order. Default: the FER2013 class
        names when the labels are integers in 0..6, else ``str(label)``.
    labels : array-like, optional
        Classes to show, in order. Default: the sorted union of ``y_true`` and ``y_pred``.
    title : str, optional
        Title of the figure.
    normalize : {"true", "pred", "all"} or None, default="true"
        Divide the counts by the true class totals (rows), predicted class totals
        (columns) or all samples, shown as fractions with 2 decimals; None shows counts.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = _png_path(path)
    figure = _confusion_matrix_figure(
        y_true, y_pred, class_names=class_names, labels=labels, title=title, normalize=normalize
    )
    return _save_png(figure, path)


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    long_phase_start: int | None = None,
    title: str | None = None,
) -> Path:
    """Draw training and validation accuracy per epoch and save them as a PNG.

    Parameters
    ----------
    history : mapping of str to sequence of float
        ``history_`` of :class:`skfer.TransferCNNClassifier`: ``accuracy`` and, optionally,
        ``val_accuracy`` per epoch; NaN entries (epochs without the value) are skipped.
    path : str or os.PathLike
        PNG file to write (``.png``); its parent folders are created.
    long_phase_start : int, optional
        Number of epochs before the long retraining (``long_phase_start_`` of the
        classifier); a red vertical line marks where it begins. None: no line.
    title : str, optional
        Title of the figure.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = _png_path(path)
    figure = _training_curves_figure(history, long_phase_start=long_phase_start, title=title)
    return _save_png(figure, path)


def _confusion_matrix_figure(y_true, y_pred, *, class_names, labels, title, normalize):
    """Return the Figure of :func:`plot_confusion_matrix`."""
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    names = class_display_names(labels, class_names)
    size = 2.0 + 0.7 * len(labels)
    figure = _new_figure(figsize=(size + 1.0, size))
    ax = figure.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=labels,
        display_labels=names,
        normalize=normalize,
        values_format=".2f" if normalize else "d",
        cmap="Blues",
        xticks_rotation=45,
        ax=ax,
    )
    _set_title(ax, title)
    figure.tight_layout()
    return figure


def _set_title(ax, title: str | None) -> None:
    """``ax``'s title, wrapped to the figure's width (a long model label would be cut off)."""
    if title is not None:
        characters = int(ax.figure.get_figwidth() * TITLE_CHARACTERS_PER_INCH)
        ax.set_title(textwrap.fill(title, width=characters))


def _training_curves_figure(history, *, long_phase_start, title):
    """Return the Figure of :func:`plot_training_curves`."""
    if "accuracy" not in history:
        raise ValueError(
            "history must hold the training accuracy per epoch under 'accuracy'; pass the "
            f"history_ of a fitted TransferCNNClassifier. Received: keys {sorted(history)}"
        )
    n_epochs = len(history["accuracy"])
    if n_epochs == 0:
        raise ValueError("history must hold at least one epoch. Received: accuracy=[]")
    if long_phase_start is not None and not (
        isinstance(long_phase_start, numbers.Integral) and 0 <= long_phase_start < n_epochs
    ):
        raise ValueError(
            f"long_phase_start must be the number of epochs before the long retraining, in "
            f"0..{n_epochs - 1}; pass None when there is no long retraining. "
            f"Received: long_phase_start={long_phase_start!r}"
        )
    figure = _new_figure(figsize=(7.0, 4.5))
    ax = figure.add_subplot()
    for key, label in (("accuracy", "training"), ("val_accuracy", "validation")):
        if key in history:
            epochs, values = _finite_points(history[key])
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
    if long_phase_start is not None:
        ax.axvline(
            long_phase_start + 0.5, color="red", linestyle="--", label="long retraining begins"
        )
    ax.set_xlim(0.5, n_epochs + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    _set_title(ax, title)
    figure.tight_layout()
    return figure


def _finite_points(values: Sequence[float]) -> tuple[list[int], list[float]]:
    """Return the 1-based epochs and values of the entries that are not NaN."""
    points = [(epoch, float(v)) for epoch, v in enumerate(values, start=1) if not math.isnan(v)]
    return [epoch for epoch, _ in points], [value for _, value in points]


def _new_figure(**kwargs):
    """Return a ``matplotlib.figure.Figure``, outside pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'skfer[plots]'") from error
    return Figure(**kwargs)


def _png_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that it names a PNG file."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file. Received: path={str(path)!r}")
    return path


def _save_png(figure, path: Path) -> Path:
    """Save ``figure`` as a PNG at ``path``, creating parent folders, and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI)
    figure.clear()
    return path
