"""skfer.metrics (numbers equal scikit-learn's, table, JSON) and skfer.plots (PNG figures)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from conftest import TINY
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from skfer import TransferCNNClassifier, __version__
from skfer.datasets import FER2013_CLASSES
from skfer.metrics import evaluate, load_results, results_table, save_results
from skfer.plots import (
    _confusion_matrix_figure,
    _training_curves_figure,
    plot_confusion_matrix,
    plot_training_curves,
)

# Hand-made: 7 of 10 right; recall 2/3, 2/2, 2/4, 1/1; precision 2/3, 2/3, 2/2, 1/2.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 0, 3, 3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history():
    """A ``history_`` of TransferCNNClassifier: 2 short epochs, 3 long, one epoch without val."""
    return {
        "loss": [1.9, 1.7, 1.5, 1.4, 1.3],
        "accuracy": [0.30, 0.40, 0.50, 0.60, 0.65],
        "val_loss": [1.8, float("nan"), 1.6, 1.5, 1.4],
        "val_accuracy": [0.28, float("nan"), 0.45, 0.52, 0.55],
        "phase": ["short", "short", "long", "long", "long"],
    }


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_evaluate_equals_scikit_learn_and_hand_computed_values():
    result = evaluate(Y_TRUE, Y_PRED, model="hand", split="PublicTest")
    assert result["model"] == "hand" and result["split"] == "PublicTest"
    assert result["n_samples"] == 10 and result["accuracy"] == pytest.approx(0.7)
    assert result["recall_macro"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 1) / 4)
    assert result["precision_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1 / 2) / 4)
    macro = dict(average="macro", zero_division=0)
    assert result["precision_macro"] == pytest.approx(precision_score(Y_TRUE, Y_PRED, **macro))
    assert result["recall_macro"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, **macro))
    assert result["f1_macro"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, **macro))
    assert result["recall_per_class"] == pytest.approx(
        {"angry": 2 / 3, "disgust": 1.0, "fear": 0.5, "happy": 1.0}
    )
    assert list(result["recall_per_class"]) == list(FER2013_CLASSES[:4])
    assert result["confusion_matrix"] == confusion_matrix(Y_TRUE, Y_PRED).tolist()
    assert result["confusion_matrix"][2] == [1, 0, 2, 1]
    assert json.loads(json.dumps(result)) == result


def test_evaluate_over_given_labels_and_names():
    all_classes = evaluate(Y_TRUE, Y_PRED, model="m", split="PrivateTest", labels=range(7))
    assert list(all_classes["recall_per_class"]) == list(FER2013_CLASSES)
    assert all_classes["recall_per_class"]["neutral"] == 0.0  # absent class: zero_division=0
    assert all_classes["recall_macro"] == pytest.approx(
        recall_score(Y_TRUE, Y_PRED, labels=range(7), average="macro", zero_division=0)
    )
    assert len(all_classes["confusion_matrix"]) == 7

    words = evaluate(["b", "a", "b"], ["b", "b", "b"], model="m", split="dev")
    assert words["recall_per_class"] == {"a": 0.0, "b": 1.0}
    named = evaluate([0, 9, 9], [0, 9, 0], model="m", split="dev", class_names=["zero", "nine"])
    assert named["recall_per_class"] == {"zero": 1.0, "nine": 0.5}
    assert list(evaluate([0, 9], [0, 9], model="m", split="dev")["recall_per_class"]) == [
        "0",
        "9",
    ]


@pytest.mark.parametrize("split", ["", None])
def test_evaluate_requires_the_split(split):
    with pytest.raises(ValueError, match=r"split must name.*Received: split="):
        evaluate(Y_TRUE, Y_PRED, model="m", split=split)


def test_evaluate_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"len\(y_true\)=10, len\(y_pred\)=9"):
        evaluate(Y_TRUE, Y_PRED[:-1], model="m", split="PublicTest")
    with pytest.raises(
        ValueError,
        match=r"labels=range\(len\(class_names\)\).*7 class_names for labels \[0, 1, 2, 3\]",
    ):
        evaluate(Y_TRUE, Y_PRED, model="m", split="PublicTest", class_names=FER2013_CLASSES)


def test_results_table_has_every_metric_split_and_note():
    public = evaluate(Y_TRUE, Y_PRED, model="cnn", split="PublicTest")
    private = evaluate(Y_TRUE[:6], Y_PRED[:6], model="ens|2", split="PrivateTest")
    private["note"] = "ensemble of 2"
    table = results_table([public, private], digits=3)
    lines = table.splitlines()
    assert len(lines) == 4 and all(line.startswith("| ") and line.endswith(" |") for line in lines)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:7] == [
        "model",
        "split",
        "n",
        "accuracy",
        "precision (macro)",
        "recall (macro)",
        "F1 (macro)",
    ]
    assert header[7:] == [f"recall {name}" for name in FER2013_CLASSES[:4]] + ["note"]
    for result, line in zip([public, private], lines[2:], strict=True):
        assert result["split"] in line and f"| {result['n_samples']} |" in line
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert f"{result[key]:.3f}" in line
        for value in result["recall_per_class"].values():
            assert f"{value:.3f}" in line
    assert "ens\\|2" in lines[3] and lines[3].endswith("| ensemble of 2 |")
    assert lines[2].endswith("|  |")  # public has no note
    assert "note" not in results_table([public])


def test_results_table_rejects_other_dicts():
    with pytest.raises(ValueError, match=r"results\[0\].*missing keys \['split'"):
        results_table([{"model": "m"}])


def test_results_json_round_trip(tmp_path):
    results = [
        evaluate(Y_TRUE, Y_PRED, model="cnn", split="PublicTest"),
        {**evaluate(Y_TRUE, Y_PRED, model="cnn", split="PrivateTest"), "note": "x"},
    ]
    path = save_results(results, tmp_path / "out" / "results.json")
    assert path == tmp_path / "out" / "results.json"
    assert json.loads(path.read_text())["skfer_version"] == __version__
    assert load_results(path) == results
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a results file"):
        load_results(path)


def test_confusion_matrix_png_shows_row_normalised_fractions(tmp_path):
    path = plot_confusion_matrix(Y_TRUE, Y_PRED, tmp_path / "figs" / "cm.png", title="PublicTest")
    assert path == tmp_path / "figs" / "cm.png"
    _assert_png(path)

    figure = _confusion_matrix_figure(
        Y_TRUE, Y_PRED, class_names=None, labels=None, title=None, normalize="true"
    )
    ax = figure.axes[0]
    shown = np.array([float(text.get_text()) for text in ax.texts]).reshape(4, 4)
    counts = confusion_matrix(Y_TRUE, Y_PRED)
    assert np.allclose(shown, np.round(counts / counts.sum(axis=1, keepdims=True), 2))
    assert [text.get_text() for text in ax.texts][8:12] == ["0.25", "0.00", "0.50", "0.25"]
    assert np.allclose(ax.images[0].get_array().sum(axis=1), 1.0)
    assert [label.get_text() for label in ax.get_yticklabels()] == list(FER2013_CLASSES[:4])


def test_training_curves_png_marks_the_long_phase(tmp_path):
    history = _history()
    path = plot_training_curves(history, tmp_path / "curves.png", long_phase_start=2)
    _assert_png(path)

    figure = _training_curves_figure(history, long_phase_start=2, title="t")
    ax = figure.axes[0]
    red = [line for line in ax.lines if line.get_color() == "red"]
    assert len(red) == 1 and list(red[0].get_xdata()) == [2.5, 2.5]
    assert red[0].get_label() == "long retraining begins"
    curves = {line.get_label(): line for line in ax.lines if line not in red}
    assert list(curves["training"].get_xdata()) == [1, 2, 3, 4, 5]
    assert list(curves["validation"].get_xdata()) == [1, 3, 4, 5]  # NaN epoch skipped
    assert not any(math.isnan(v) for v in curves["validation"].get_ydata())
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["training", "validation", "long retraining begins"]

    no_validation = _training_curves_figure(
        {"accuracy": [0.1, 0.2]}, long_phase_start=None, title=None
    )
    assert [line.get_label() for line in no_validation.axes[0].lines] == ["training"]


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Received: keys \['loss', 'val_accuracy'\]"):
        plot_training_curves({"loss": [1.0], "val_accuracy": [0.5]}, tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"in 0\.\.4.*long_phase_start=5"):
        plot_training_curves(_history(), tmp_path / "c.png", long_phase_start=5)
    with pytest.raises(ValueError, match=r"\.png file"):
        plot_training_curves(_history(), tmp_path / "c.pdf")
    assert not list(tmp_path.iterdir())


def test_plots_without_matplotlib_ask_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'skfer\[plots\]'"):
        plot_training_curves(_history(), tmp_path / "c.png")


def test_a_fitted_classifier_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    X = rng.integers(0, 60, (64, 12, 12)).astype(np.uint8)
    X[y == 1, :6] += 180
    X[y == 0, 6:] += 180
    params = {**TINY, "short_epochs": 2, "long_epochs": 2, "validation_fraction": 0.25}
    clf = TransferCNNClassifier(**params).fit(X, y)
    result = evaluate(y, clf.predict(X), model="tiny", split="Training")
    assert list(result["recall_per_class"]) == ["angry", "disgust"]
    assert "| tiny | Training | 64 |" in results_table([result])
    _assert_png(plot_confusion_matrix(y, clf.predict(X), tmp_path / "cm.png"))
    curves = plot_training_curves(
        clf.history_, tmp_path / "curves.png", long_phase_start=clf.long_phase_start_
    )
    _assert_png(curves)


@pytest.mark.parametrize("kind", ["confusion", "curves"])
def test_a_long_title_is_wrapped_inside_the_figure(kind):
    title = (
        "MobileNet 1.0 (face-trained, VGGFace2), frozen, 224 px, soft targets (FER+ votes), " * 2
    )
    if kind == "confusion":
        figure = _confusion_matrix_figure(
            Y_TRUE, Y_PRED, class_names=None, labels=None, title=title, normalize="true"
        )
    else:
        figure = _training_curves_figure(_history(), long_phase_start=2, title=title)
    text = figure.axes[0].title
    assert text.get_text().replace("\n", " ") == title.strip()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    box, frame = text.get_window_extent(renderer), figure.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1
