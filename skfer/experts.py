"""One-vs-all experts: one binary CNN per expression, each trained class-k-vs-rest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .classifier import TransferCNNClassifier

__all__ = ["ClassExpert", "OneVsAllExperts", "spread_score"]


def _set_class_weight(estimator, class_weight):
    """Apply ``class_weight`` to ``estimator`` if it takes one; refuse silently ignoring it."""
    if class_weight is None:
        return estimator
    if "class_weight" not in estimator.get_params():
        raise ValueError(
            f"class_weight={class_weight!r} cannot be applied: {type(estimator).__name__} has "
            f"no class_weight parameter. Pass class_weight=None and balance the data yourself. "
            f"Received: estimator={type(estimator).__name__}"
        )
    return estimator.set_params(class_weight=class_weight)


def spread_score(score: np.ndarray, column: int, n_classes: int) -> np.ndarray:
    """An expert's scores as ``n_classes`` probability columns: ``score`` in ``column`` and
    ``1 - score`` shared evenly by the others (:meth:`ClassExpert.predict_proba`)."""
    rest = (1.0 - score) / (n_classes - 1)
    proba = np.repeat(rest[:, np.newaxis], n_classes, axis=1)
    proba[:, column] = score
    return proba


class ClassExpert(ClassifierMixin, BaseEstimator):
    """A binary expert for one class: ``estimator`` trained on ``y == positive_class``.

    Fitted on multi-class labels, it learns whether a sample belongs to ``positive_class``.
    To sit in a :class:`~sklearn.ensemble.StackingClassifier` beside multi-class members (which
    aligns every member's columns on the same labels), ``predict_proba`` has one column per
    label of ``y``: the expert's score for ``positive_class`` in its column and the rest,
    ``1 - score``, spread evenly over the other columns. :meth:`score_positive` gives the
    score alone.

    Parameters
    ----------
    estimator : classifier, default=None
        Template of the binary model; None means ``TransferCNNClassifier()``.
    positive_class : label
        The class this expert recognises.
    class_weight : None or 'balanced', default='balanced'
        Passed to the estimator: FER2013's rarest class (disgust) is 1.5% of the data, so an
        unweighted expert would learn to say "rest" always.
    stopping_metric : str or None, default='balanced_accuracy'
        Passed to the estimator: its early stopping follows this validation score. The
        validation data are not class-weighted, so plain accuracy would keep the epoch nearest
        to always saying "rest" (:mod:`skfer.stopping`). None leaves the estimator's own;
        an estimator without a ``stopping_metric`` parameter (no early stopping) is unaffected.

    Attributes
    ----------
    classes_ : ndarray
        The labels of ``y``, sorted.
    estimator_ : classifier
        The fitted binary model (labels ``False`` / ``True``: is ``positive_class``).
    """

    def __init__(
        self,
        estimator=None,
        positive_class=None,
        *,
        class_weight="balanced",
        stopping_metric="balanced_accuracy",
    ):
        self.estimator = estimator
        self.positive_class = positive_class
        self.class_weight = class_weight
        self.stopping_metric = stopping_metric

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def fit(self, X, y, **fit_params):
        """Fit the binary model on ``y == positive_class``.

        ``validation_data=(X_val, y_val)`` in ``fit_params`` is relabelled the same way.
        """
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if self.positive_class not in set(np.unique(y).tolist()):
            raise ValueError(
                f"The expert's positive_class does not occur in y; pick one of the labels. "
                f"Received: positive_class={self.positive_class!r}, labels={np.unique(y)[:10]}"
            )
        if fit_params.get("validation_data") is not None:
            X_val, y_val = fit_params["validation_data"]
            fit_params = {
                **fit_params,
                "validation_data": (X_val, np.asarray(y_val) == self.positive_class),
            }
        template = self.estimator if self.estimator is not None else TransferCNNClassifier()
        self.estimator_ = _set_class_weight(clone(template), self.class_weight)
        if self.stopping_metric is not None and "stopping_metric" in self.estimator_.get_params():
            self.estimator_.set_params(stopping_metric=self.stopping_metric)
        self.estimator_.fit(X, y == self.positive_class, **fit_params)
        self.classes_ = np.unique(y)
        return self

    def score_positive(self, X) -> np.ndarray:
        """The expert's own score for its class, ``P(positive_class)``.

        :class:`~skfer.TransferCNNClassifier` experts on one backbone share its features
        through the feature cache (``predict_proba_cached``).
        """
        check_is_fitted(self, "estimator_")
        predict = getattr(self.estimator_, "predict_proba_cached", self.estimator_.predict_proba)
        proba = predict(X)
        return proba[:, int(np.flatnonzero(self.estimator_.classes_)[0])]

    def predict_proba(self, X) -> np.ndarray:
        """The score in ``positive_class``'s column, ``1 - score`` shared by the others."""
        column = int(np.searchsorted(self.classes_, self.positive_class))
        return spread_score(self.score_positive(X), column, len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """The argmax of :meth:`predict_proba`: ``positive_class`` where its score exceeds 1/K.

        With K labels, each other column holds ``(1 - score) / (K - 1)``, so the score wins
        above ``1/K`` (not 0.5); below it the other labels tie and the first of them in
        ``classes_`` is predicted (at exactly ``1/K``, the first of all labels in ``classes_``).
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class OneVsAllExperts(ClassifierMixin, BaseEstimator):
    """One binary expert per class, each trained class-k-vs-rest with the imbalance weighted.

    scikit-learn's :class:`~sklearn.multiclass.OneVsRestClassifier` does the relabelling too,
    but it cannot restrict which experts are built, does not relabel ``validation_data`` for
    early stopping, and leaves each binary problem unweighted; so skfer keeps one
    :class:`ClassExpert` per class and combines their scores the same way (normalised).

    Parameters
    ----------
    estimator : classifier, default=None
        Template of each expert; None means ``TransferCNNClassifier()``.
    classes : sequence of labels or None, default=None
        Build experts for these classes only; None builds one per class in ``y``.
    class_weight : None or 'balanced', default='balanced'
        Applied to each expert's binary problem.
    stopping_metric : str or None, default='balanced_accuracy'
        The validation score each expert's early stopping follows (see :class:`ClassExpert`).
    calibration : None or 'prior', default=None
        How :meth:`predict` and :meth:`predict_proba` combine the expert scores. None: as
        they are. A 'balanced' expert scores its class as if it were half of the data, so
        uncalibrated scores favour rare classes (in one run, 289 of 500 PublicTest images
        were predicted disgust, 1.5% of FER2013's images). 'prior' rescales
        each score's odds by its class's training frequency (``class_prior_``), which
        undoes the weighting: predictions then follow the class frequencies, for accuracy
        rather than per-class recall.

    Attributes
    ----------
    classes_ : ndarray
        The classes with an expert, sorted: the columns of :meth:`expert_scores` and
        :meth:`predict_proba`.
    class_prior_ : ndarray
        Each class's share of the training labels, in the order of ``classes_``.
    experts_ : list of ClassExpert
        The fitted experts, in the order of ``classes_``.
    """

    def __init__(
        self,
        estimator=None,
        *,
        classes: Sequence | None = None,
        class_weight="balanced",
        stopping_metric="balanced_accuracy",
        calibration=None,
    ):
        self.estimator = estimator
        self.classes = classes
        self.class_weight = class_weight
        self.stopping_metric = stopping_metric
        self.calibration = calibration

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def fit(self, X, y, **fit_params):
        """Train one expert per selected class on the same images.

        Parameters
        ----------
        X : array-like
            Training images.
        y : array-like of shape (n,)
            Multi-class labels.
        **fit_params : dict
            Passed to every expert's ``fit`` (``validation_data`` is relabelled per expert).

        Returns
        -------
        self : OneVsAllExperts
        """
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if self.calibration not in (None, "prior") or (
            self.calibration == "prior" and self.class_weight not in (None, "balanced")
        ):
            raise ValueError(
                "calibration must be None or 'prior' ('prior' with class_weight None or "
                f"'balanced'). Received: calibration={self.calibration!r}, "
                f"class_weight={self.class_weight!r}"
            )
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(
                f"One-vs-all experts need at least 2 classes in y. Received: {present.tolist()}"
            )
        wanted = present if self.classes is None else np.unique(np.asarray(self.classes))
        missing = np.setdiff1d(wanted, present)
        if missing.size or wanted.size == 0:
            raise ValueError(
                f"classes must be a non-empty subset of the labels in y {present.tolist()}. "
                f"Received: classes={self.classes!r}"
            )
        self.classes_ = wanted
        self.class_prior_ = np.array([np.mean(y == label) for label in wanted])
        self.experts_ = [
            ClassExpert(
                self.estimator,
                label,
                class_weight=self.class_weight,
                stopping_metric=self.stopping_metric,
            ).fit(X, y, **fit_params)
            for label in self.classes_
        ]
        return self

    def expert(self, label) -> ClassExpert:
        """The fitted expert of class ``label``."""
        check_is_fitted(self, "experts_")
        index = np.flatnonzero(self.classes_ == label)
        if index.size == 0:
            raise KeyError(
                f"No expert for class {label!r}; experts exist for {self.classes_.tolist()}."
            )
        return self.experts_[int(index[0])]

    def expert_scores(self, X) -> np.ndarray:
        """Each expert's own score for its class, shape ``(n, len(classes_))``."""
        check_is_fitted(self, "experts_")
        return np.column_stack([expert.score_positive(X) for expert in self.experts_])

    def _calibrated_scores(self, X) -> np.ndarray:
        """Expert scores, their odds multiplied by ``prior / (1 - prior)`` with 'prior'.

        A 'balanced' expert saw its class as half of the data; the rescaled score is its
        probability at the class's real frequency. Unweighted experts saw that already.
        """
        scores = self.expert_scores(X)
        if self.calibration != "prior" or self.class_weight is None:
            return scores
        ratio = self.class_prior_ / (1.0 - self.class_prior_)
        return scores * ratio / (scores * ratio + 1.0 - scores)

    def predict_proba(self, X) -> np.ndarray:
        """Expert scores (calibrated as ``calibration`` says) normalised to sum to one."""
        scores = self._calibrated_scores(X)
        totals = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / scores.shape[1])
        return np.divide(scores, totals, out=uniform, where=totals > 0)

    def predict(self, X) -> np.ndarray:
        """The class with the highest (calibrated) expert score.

        Uncalibrated (``calibration=None``, the default) with 'balanced' experts, this
        favours rare classes: see ``calibration``.
        """
        return self.classes_[np.argmax(self._calibrated_scores(X), axis=1)]
