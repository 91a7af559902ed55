"""Error bars of skfer.metrics: bootstrap intervals, paired differences and McNemar's test."""

import itertools

import numpy as np
import pytest

from skfer.metrics import (
    bootstrap_interval,
    evaluate,
    mcnemar_p_value,
    paired_difference,
    paired_difference_markdown,
    results_table,
)


def _pair(a_only, b_only, both, neither):
    """Return y_true, pred_a, pred_b with the given counts of who classifies right."""
    n = a_only + b_only + both + neither
    y_true = np.zeros(n, dtype=int)
    right_a = np.array([1] * a_only + [0] * b_only + [1] * both + [0] * neither, dtype=bool)
    right_b = np.array([0] * a_only + [1] * b_only + [1] * both + [0] * neither, dtype=bool)
    return y_true, np.where(right_a, 0, 1), np.where(right_b, 0, 2)


def _predictions(n, accuracy, seed):
    """Return labels in 0..6 and predictions right on round(accuracy * n) of them."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 7, size=n)
    wrong = rng.permutation(n) >= round(accuracy * n)
    return y_true, np.where(wrong, (y_true + 1) % 7, y_true)


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [
        (1, 5, 2 * (1 + 6) / 64),  # 2 * P(X <= 1), X ~ Binomial(6, 0.5)
        (5, 1, 2 * (1 + 6) / 64),
        (0, 4, 2 / 16),
        (3, 3, 1.0),
        (0, 0, 1.0),
    ],
)
def test_mcnemar_p_value_equals_the_exact_binomial_test(a_only, b_only, expected):
    y_true, pred_a, pred_b = _pair(a_only, b_only, both=4, neither=2)
    assert mcnemar_p_value(y_true, pred_a, pred_b) == pytest.approx(expected, rel=1e-12)


def test_paired_difference_on_a_hand_built_example():
    # a right on 1, 2, 3, 5; b right on 0, 3, 5: a only on 1 and 2, b only on 0
    y_true = [0, 1, 2, 3, 4, 5]
    pred_a = [9, 1, 2, 3, 9, 5]
    pred_b = [0, 9, 9, 3, 9, 5]
    result = paired_difference(y_true, pred_a, pred_b, n_resamples=500)
    assert result["difference"] == pytest.approx(4 / 6 - 3 / 6)
    assert (result["a_only_correct"], result["b_only_correct"]) == (2, 1)
    assert result["mcnemar_p_value"] == pytest.approx(1.0)  # 2 * P(X <= 1 | n=3) = 2 * 4/8
    assert result["n_samples"] == 6 and result["confidence"] == 0.95
    low, high = result["interval"]
    assert -1 <= low <= result["difference"] <= high <= 1


def test_paired_difference_agrees_with_mcnemar_and_contains_the_difference():
    y_true, pred_a, pred_b = _pair(a_only=120, b_only=96, both=2200, neither=1173)
    result = paired_difference(y_true, pred_a, pred_b)
    assert result["difference"] == pytest.approx(24 / 3589)
    assert result["mcnemar_p_value"] == pytest.approx(mcnemar_p_value(y_true, pred_a, pred_b))
    assert 0.05 < result["mcnemar_p_value"] < 0.2
    low, high = result["interval"]
    assert low < 0 < result["difference"] < high  # not significant, as McNemar says


def test_paired_interval_of_identical_predictions_is_zero():
    y_true, y_pred = _predictions(200, 0.6, seed=1)
    result = paired_difference(y_true, y_pred, y_pred.copy(), n_resamples=300)
    assert result["interval"] == [0.0, 0.0]
    assert result["difference"] == 0.0 and result["mcnemar_p_value"] == 1.0


def test_bootstrap_interval_contains_the_accuracy_and_narrows_with_more_images():
    small = _predictions(100, 0.7, seed=2)
    large = _predictions(10_000, 0.7, seed=3)
    small_low, small_high = bootstrap_interval(*small)
    large_low, large_high = bootstrap_interval(*large)
    assert small_low < 0.7 < small_high and large_low < 0.7 < large_high
    assert large_high - large_low < (small_high - small_low) / 5  # about sqrt(100) times
    # the normal approximation: 2 * 1.96 * sqrt(0.7 * 0.3 / 10000) = 0.018
    assert large_high - large_low == pytest.approx(0.018, abs=0.002)


def test_bootstrap_interval_is_repeatable_and_seeded():
    y_true, y_pred = _predictions(300, 0.65, seed=4)
    first = bootstrap_interval(y_true, y_pred, random_state=7)
    assert bootstrap_interval(y_true, y_pred, random_state=7) == first
    assert bootstrap_interval(y_true, y_pred, random_state=8) != first
    state = np.random.get_state()[1].copy()  # noqa: NPY002 -- checks the global generator
    bootstrap_interval(y_true, y_pred)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_bootstrap_interval_of_perfect_predictions_is_one():
    y = np.arange(50) % 7
    assert bootstrap_interval(y, y) == (1.0, 1.0)


@pytest.mark.parametrize("confidence", [0.3, 0.8, 0.9])
def test_bootstrap_interval_matches_all_resamples_of_three_images(confidence):
    right = np.array([True, False, True])
    y_true = np.zeros(3, dtype=int)
    y_pred = np.where(right, 0, 1)
    # all 27 resamples of 3 images are equally likely; the quantiles of their accuracies
    accuracies = [right[list(indices)].mean() for indices in itertools.product(range(3), repeat=3)]
    expected = np.quantile(
        accuracies, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf"
    )
    interval = bootstrap_interval(y_true, y_pred, confidence=confidence, n_resamples=20_000)
    np.testing.assert_allclose(interval, expected)


def test_evaluate_interval_adds_a_seeded_accuracy_interval():
    y_true, y_pred = _predictions(400, 0.66, seed=5)
    plain = evaluate(y_true, y_pred, model="m", split="PublicTest")
    assert "accuracy_interval" not in plain and "confidence" not in plain
    result = evaluate(y_true, y_pred, model="m", split="PublicTest", interval=True)
    assert result["accuracy_interval"] == list(bootstrap_interval(y_true, y_pred))
    assert result["confidence"] == 0.95
    low, high = result["accuracy_interval"]
    assert low < result["accuracy"] < high
    assert {key: value for key, value in result.items() if key in plain} == plain


def test_results_table_shows_the_interval_next_to_the_accuracy():
    y_true, y_pred = _predictions(400, 0.66, seed=6)
    with_interval = evaluate(y_true, y_pred, model="cnn", split="PublicTest", interval=True)
    with_interval["accuracy_interval"] = [0.64, 0.671]
    without = evaluate(y_true, y_pred, model="ens", split="PublicTest")
    header, _, first, second = results_table([with_interval, without]).splitlines()
    assert header.split(" | ")[3] == "accuracy [95% interval]"
    assert first.split(" | ")[3] == "0.6600 [0.6400, 0.6710]"
    assert second.split(" | ")[3] == "0.6600"
    assert results_table([without]).splitlines()[0].split(" | ")[3] == "accuracy"


def test_paired_difference_markdown_is_one_line():
    result = {
        "difference": 24 / 3589,
        "interval": [-0.0012, 0.0145],
        "mcnemar_p_value": 0.1092,
        "a_only_correct": 120,
        "b_only_correct": 96,
        "n_samples": 3589,
        "confidence": 0.95,
    }
    assert paired_difference_markdown("ensemble", "best single", result) == (
        "ensemble \u2212 best single: +0.0067 [\u22120.0012, +0.0145], McNemar p = 0.11 "
        "(only ensemble right 120, only best single right 96, of 3589)"
    )
    small = paired_difference_markdown("a", "b", {**result, "mcnemar_p_value": 1e-5})
    assert "McNemar p < 0.001" in small
    with pytest.raises(ValueError, match="not a result of skfer.metrics.paired_difference"):
        paired_difference_markdown("a", "b", {"difference": 0.1})


@pytest.mark.parametrize(
    ("function", "kwargs", "message"),
    [
        (bootstrap_interval, {"y_pred": [0, 1]}, r"y_true and y_pred must have one entry.*len\("),
        (paired_difference, {"pred_b": [0]}, r"y_true, pred_a and pred_b must have one entry"),
        (mcnemar_p_value, {"pred_a": [0, 1]}, r"len\(pred_a\)=2"),
        (bootstrap_interval, {"y_true": [], "y_pred": []}, "at least one sample"),
        (paired_difference, {"y_true": [], "pred_a": [], "pred_b": []}, "0 samples"),
        (bootstrap_interval, {"y_pred": np.eye(3)}, r"argmax\(axis=1\).*shape \(3, 3\)"),
        (bootstrap_interval, {"confidence": 1.0}, r"strictly between 0 and 1.*confidence=1.0"),
        (paired_difference, {"confidence": 0}, "confidence=0"),
        (bootstrap_interval, {"confidence": 95}, "confidence=95"),
        (bootstrap_interval, {"n_resamples": 0}, "n_resamples must be a positive integer"),
        (paired_difference, {"n_resamples": 2.5}, "n_resamples=2.5"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_problem(function, kwargs, message):
    arguments = {"y_true": [0, 1, 2]}
    if function is bootstrap_interval:
        arguments["y_pred"] = [0, 1, 1]
    else:
        arguments |= {"pred_a": [0, 1, 1], "pred_b": [0, 0, 2]}
    with pytest.raises(ValueError, match=message):
        function(**{**arguments, **kwargs})
