"""Experts and the stacked ensemble, on real FER2013 images with the tiny test backbone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import StackingClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier

from skfer import OneVsAllExperts, TransferCNNClassifier
from skfer.cache import feature_cache
from skfer.ensemble import ExpertSelection, make_fer_ensemble, select_experts
from skfer.experts import ClassExpert


@pytest.fixture(scope="module")
def fitted(fer2013_subset):
    """A base model and all seven experts on 420 real images (tiny backbone, 24 px)."""
    from conftest import TINY

    X, y, X_test, y_test = fer2013_subset
    params = {**TINY, "input_size": 24, "short_epochs": 3, "long_epochs": 1}
    base = TransferCNNClassifier(**params).fit(X, y)
    feature_cache.clear()
    experts = OneVsAllExperts(TransferCNNClassifier(**{**params, "long_epochs": 0})).fit(X, y)
    misses = feature_cache.misses
    return base, experts, misses, (X, y, X_test, y_test)


def test_one_binary_expert_per_class_scores_in_class_order(fitted):
    base, experts, _, (X, y, X_test, _) = fitted
    assert experts.classes_.tolist() == list(range(7)) and len(experts.experts_) == 7
    for label, expert in zip(experts.classes_, experts.experts_, strict=True):
        assert expert.positive_class == label
        assert expert.estimator_.classes_.tolist() == [False, True]
        assert expert.estimator_.class_weight == "balanced"
    scores = experts.expert_scores(X_test)
    assert scores.shape == (len(X_test), 7) and ((scores >= 0) & (scores <= 1)).all()
    expert_proba = experts.expert(3).predict_proba(X_test)
    np.testing.assert_allclose(scores[:, 3], expert_proba[:, 3])
    np.testing.assert_allclose(expert_proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(experts.predict_proba(X_test).sum(axis=1), 1, rtol=1e-6)
    assert set(experts.predict(X_test)) <= set(range(7))


def test_experts_share_one_backbone_feature_computation(fitted):
    _, _, misses, _ = fitted
    assert misses == 1  # seven experts, same backbone and images: one forward pass


def test_restricted_experts_and_bad_classes(fer2013_subset, tiny_params):
    X, y, _, _ = fer2013_subset
    params = {**tiny_params, "long_epochs": 0}
    experts = OneVsAllExperts(TransferCNNClassifier(**params), classes=[1, 5]).fit(X, y)
    assert experts.classes_.tolist() == [1, 5] and experts.expert_scores(X).shape == (len(X), 2)
    with pytest.raises(ValueError, match="subset of the labels"):
        OneVsAllExperts(TransferCNNClassifier(**params), classes=[9]).fit(X, y)
    with pytest.raises(KeyError, match="No expert for class 0"):
        experts.expert(0)


def _all_weights(estimator):
    model = estimator.model_ if hasattr(estimator, "model_") else estimator.estimator_.model_
    return [w.copy() for w in model.get_weights()]


def test_stack_with_frozen_members_trains_only_the_mlp(fitted):
    base, experts, _, (_, _, X_test, y_test) = fitted
    before = [_all_weights(base)] + [_all_weights(e) for e in experts.experts_]
    half = len(X_test) // 2
    stack = make_fer_ensemble(base, experts, expert_classes=[1, 2], random_state=0)
    assert isinstance(stack, StackingClassifier)
    assert isinstance(stack.final_estimator, MLPClassifier)
    assert len(stack.final_estimator.hidden_layer_sizes) == 2
    stack.fit(X_test[:half], y_test[:half])
    after = [_all_weights(base)] + [_all_weights(e) for e in experts.experts_]
    for old, new in zip(before, after, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(old, new, strict=True))
    assert [name for name, _ in stack.estimators] == ["base", "expert_1", "expert_2"]
    # 7 columns from the base model and from each expert
    assert stack.final_estimator_.n_features_in_ == 21
    proba = stack.predict_proba(X_test[half:])
    assert proba.shape == (len(X_test) - half, 7)


def test_cross_validated_stacking_trains_the_members(fer2013_subset, tiny_params):
    X, y, X_test, _ = fer2013_subset
    params = {**tiny_params, "long_epochs": 0}
    stack = make_fer_ensemble(
        TransferCNNClassifier(**params),
        OneVsAllExperts(TransferCNNClassifier(**params)),
        expert_classes=[1],
        prefit=False,
        classes=list(range(7)),
        cv=2,
        random_state=0,
    ).fit(X, y)
    assert (
        isinstance(stack.estimators_[1], ClassExpert) and stack.estimators_[1].positive_class == 1
    )
    assert stack.predict(X_test).shape == (len(X_test),)


def test_expert_selection_returns_a_subset_and_its_reason(fitted):
    base, experts, _, (_, _, X_test, y_test) = fitted
    selection = select_experts(base, experts, X_test, y_test, cv=3, min_gain=0.0)
    assert set(selection.selected) <= set(experts.classes_.tolist())
    assert "greedy forward selection" in selection.rule
    assert len(selection.candidates) == 7
    scores = [selection.baseline_score] + [score for _, score in selection.steps]
    assert all(later > earlier for earlier, later in zip(scores, scores[1:], strict=False))
    strict = select_experts(base, experts, X_test, y_test, cv=3, min_gain=1.0)
    assert list(strict.selected) == []  # no gain in accuracy can exceed 1
    assert "base model alone" in selection.summary()
    names = [f"class{k}" for k in range(7)]
    experts_named = [line for line in selection.summary(names).splitlines() if "expert" in line]
    assert len(experts_named) == len(selection.selected)
    assert all(line.startswith("+ expert class") for line in experts_named)


def test_selection_summary_names_experts_by_class_and_other_members_by_name():
    selection = ExpertSelection(
        selected=(1,),
        selected_others=("spatial head",),
        baseline_score=0.5,
        steps=(("spatial head", 0.6), (1, 0.7)),
        candidates={},
        rule="greedy",
    )
    expected = ["rule: greedy", "base model alone: 0.5000", "+ spatial head: 0.6000"]
    assert selection.summary().splitlines() == [*expected, "+ expert 1: 0.7000"]
    names = ["angry", "disgust"]
    assert selection.summary(names).splitlines() == [*expected, "+ expert disgust: 0.7000"]


def test_candidates_that_were_not_chosen_are_named_as_the_chosen_ones_are():
    selection = ExpertSelection(
        selected=(),
        selected_others=(),
        baseline_score=0.5,
        steps=(),
        candidates={0: 0.49, "frozen": 0.48},
        rule="greedy",
        other_names=("frozen",),
    )
    names = ["angry", "disgust"]
    assert [selection.member_name(key, names) for key in selection.candidates] == [
        "expert angry",
        "frozen",
    ]


def test_expert_selection_in_parallel_processes_gives_the_same_selection(fitted):
    base, experts, _, (_, _, X_test, y_test) = fitted
    serial = select_experts(base, experts, X_test, y_test, cv=3, min_gain=0.0)
    parallel = select_experts(base, experts, X_test, y_test, cv=3, min_gain=0.0, n_jobs=2)
    assert parallel == serial
    np.testing.assert_array_equal(parallel.out_of_fold, serial.out_of_fold)


def test_selection_out_of_fold_predictions_score_what_its_cross_validation_scored(fitted):
    """Fold by fold, the selected stack's out-of-fold predictions are as accurate as the
    selection's last cross-validated score says: the same folds, seed and members."""
    base, experts, _, (_, _, X_test, y_test) = fitted
    y_test = np.asarray(y_test)
    selection = select_experts(base, experts, X_test, y_test, cv=3, min_gain=0.0, random_state=4)
    assert selection.steps  # the score is a selected stack's, not the base model's alone
    assert selection.out_of_fold.shape == y_test.shape
    folds = StratifiedKFold(3, shuffle=True, random_state=4).split(y_test, y_test)
    fold_accuracy = [np.mean(selection.out_of_fold[test] == y_test[test]) for _, test in folds]
    assert np.mean(fold_accuracy) == pytest.approx(selection.cv_score, abs=1e-12)


class ConstantScore(ClassifierMixin, BaseEstimator):
    """A stand-in binary model: scores every sample ``score``, or ``rare_score`` when the
    positive class was under a fifth of its training labels."""

    def __init__(self, score=0.6, rare_score=None, class_weight=None):
        self.score = score
        self.rare_score = rare_score
        self.class_weight = class_weight

    def fit(self, X, y):
        self.classes_ = np.array([False, True])
        rare = self.rare_score is not None and np.mean(y) < 0.2
        self.score_ = self.rare_score if rare else self.score
        return self

    def predict_proba(self, X):
        return np.tile([1 - self.score_, self.score_], (len(X), 1))


def test_class_expert_predicts_its_class_above_one_over_k():
    X, y = np.zeros((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    expert = ClassExpert(ConstantScore(0.4), positive_class=2).fit(X, y)
    assert expert.predict(X).tolist() == [2] * 6  # 0.4 < 0.5 but > 1/3
    np.testing.assert_array_equal(
        expert.predict(X), expert.classes_[expert.predict_proba(X).argmax(1)]
    )
    expert = ClassExpert(ConstantScore(0.3), positive_class=2).fit(X, y)
    assert expert.predict(X).tolist() == [0] * 6  # below 1/3: the first other label


def test_prior_calibration_undoes_the_balanced_weighting():
    X, y = np.zeros((100, 4)), np.array([0] * 90 + [1] * 10)
    template = ConstantScore(score=0.6, rare_score=0.7)
    raw = OneVsAllExperts(template).fit(X, y)
    assert raw.predict(X).tolist() == [1] * 100  # the rare class's expert is most confident
    calibrated = OneVsAllExperts(template, calibration="prior").fit(X, y)
    np.testing.assert_allclose(calibrated.class_prior_, [0.9, 0.1])
    assert calibrated.predict(X).tolist() == [0] * 100
    odds = np.array([0.6 / 0.4 * 9, 0.7 / 0.3 / 9])
    np.testing.assert_allclose(
        calibrated.predict_proba(X)[0], (odds / (1 + odds)) / (odds / (1 + odds)).sum()
    )
    np.testing.assert_allclose(calibrated.expert_scores(X)[0], [0.6, 0.7])  # raw scores
    unweighted = OneVsAllExperts(template, class_weight=None, calibration="prior").fit(X, y)
    assert unweighted.predict(X).tolist() == [1] * 100  # already saw the real frequencies
    with pytest.raises(ValueError, match="calibration must be None or 'prior'"):
        OneVsAllExperts(template, calibration="isotonic").fit(X, y)
