"""The study's ensemble: an MLP with two hidden layers stacked on a base CNN and selected experts.

:func:`make_fer_ensemble` returns a :class:`FERStackingClassifier`, a
:class:`sklearn.ensemble.StackingClassifier` that also gives the shape of its images;
:func:`select_experts` picks the experts that help, by greedy forward selection on held-out
data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.ensemble import StackingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .experts import ClassExpert, OneVsAllExperts
from .params import Interval, SequenceOf, check_params

__all__ = [
    "MLP_STACKERS",
    "MLP_STACKER_ALPHA",
    "MLP_STACKER_TOL",
    "STACKERS",
    "ExpertSelection",
    "FERStackingClassifier",
    "LogProbabilities",
    "SeedAveragedMLP",
    "make_fer_ensemble",
    "make_stacker",
    "select_experts",
    "stacker_name",
]


class FERStackingClassifier(StackingClassifier):
    """A ``StackingClassifier`` with ``image_shape_``, so that it classifies faces.

    Its one addition to scikit-learn's class (same parameters, ``fit`` and ``clone``) is the
    ``image_shape_`` that :func:`skfer.faces.predict_faces` and
    :func:`~skfer.faces.predict_paths` read to crop faces: the first member's, the base model's.
    """

    @property
    def image_shape_(self) -> tuple:
        """``(H, W, C)`` of the base model's (the first member's) training images."""
        check_is_fitted(self, "estimators_")
        return self.estimators_[0].image_shape_


STACKER_NAMES = {
    "mlp": "MLP",
    "standardized_mlp": "MLP on standardized inputs",
    "logistic": "log-probability logistic regression",
}
STACKERS = tuple(STACKER_NAMES)
"""The final estimators of :func:`make_stacker`: the study's MLP, the same MLP on inputs
standardized to zero mean and unit variance, or a logistic regression on log-probabilities."""
MLP_STACKERS = ("mlp", "standardized_mlp")
"""The stackers of :data:`STACKERS` that are MLPs (and take ``hidden_layer_sizes`` and
``seeds``)."""


def stacker_name(kind: str, seeds: int = 1) -> str:
    """The stacker of :func:`make_stacker` in words: ``'MLP'``, ``'MLP (mean of 5 seeds)'``."""
    averaged = kind in MLP_STACKERS and seeds > 1
    return STACKER_NAMES[kind] + (f" (mean of {seeds} seeds)" if averaged else "")


class LogProbabilities(TransformerMixin, BaseEstimator):
    """The logarithm of the members' probabilities, floored at ``floor``.

    The input of the ``'logistic'`` stacker: a linear model on log-probabilities weighs the
    members' evidence additively, as a product of experts does.

    Parameters
    ----------
    floor : float, default=1e-6
        Probabilities below it count as it (log 0 is undefined).
    """

    _parameter_constraints: dict = {"floor": [Interval(float, 0, 1, closed="neither")]}

    def __init__(self, floor: float = 1e-6):
        self.floor = floor

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.requires_fit = True
        return tags

    def fit(self, X, y=None):
        """Check the parameters and ``X`` (probabilities); nothing is learned."""
        check_params(self.get_params(), self._parameter_constraints)
        validate_data(self, X)
        return self

    def transform(self, X):
        """``log(max(X, floor))``."""
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, reset=False)
        return np.log(np.clip(X, self.floor, None))


MLP_STACKER_TOL = 1e-2
"""The MLP stacker's ``tol``: its training stops when the loss gains less per epoch.

scikit-learn's default (1e-4) let it run for hundreds of epochs on the few thousand images of
a stacking part and overfit them: in 5-fold cross-validation on the stacking part of run
``cpu_v7`` (2,867 images), stacking the block-13 face model with a spatial-head one gained
+0.10 points over the block-13 model's own argmax at 1e-4, +1.15 at 1e-3, +1.85 at 3e-3 and
+1.85 at 1e-2 (docs/results.md, "The spatial head"; ``benchmarks/bench_members.py`` compares
1e-4 and 1e-2 on a run's saved members).
"""

MLP_STACKER_ALPHA = 1e-4
"""The MLP stacker's L2 penalty: scikit-learn's default. 0.01 moved no run's stacking CV by
more than 0.02 points, 1 lowered FER2013's by 0.6 (docs/results.md, "The stacking MLP's L2
penalty"; ``benchmarks/bench_stacker_alpha.py``)."""


class SeedAveragedMLP(ClassifierMixin, BaseEstimator):
    """The mean probabilities of ``n_seeds`` MLPs that differ only in their initial weights.

    Each is an ``MLPClassifier(hidden_layer_sizes, tol=tol, max_iter=max_iter)`` trained on
    all of ``(X, y)``; their seeds are drawn from ``random_state``. The stacker's MLP stops
    after a few dozen epochs (:data:`MLP_STACKER_TOL`), where the initial weights still move
    its cross-validated accuracy by tenths of a point, as much as the members the selection
    weighs; averaging over seeds removes that part of the noise.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(64, 32)
        Hidden layers of each MLP.
    n_seeds : int, default=5
        MLPs averaged.
    alpha : float, default=MLP_STACKER_ALPHA
        Each MLP's L2 penalty (``MLPClassifier``'s default).
    tol : float, default=MLP_STACKER_TOL
        Each MLP's ``tol``.
    max_iter : int, default=1000
        Each MLP's ``max_iter``.
    random_state : int, RandomState instance or None, default=None
        Draws the MLPs' seeds.

    Attributes
    ----------
    estimators_ : list of MLPClassifier
        The fitted MLPs.
    classes_ : ndarray
        The labels, sorted.
    n_iter_ : int
        The most epochs any of the MLPs ran.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [SequenceOf(Interval(int, 1, None))],
        "n_seeds": [Interval(int, 1, None)],
        "alpha": [Interval(float, 0, None)],
        "tol": [Interval(float, 0, None, closed="neither")],
        "max_iter": [Interval(int, 1, None)],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64, 32),
        *,
        n_seeds: int = 5,
        alpha: float = MLP_STACKER_ALPHA,
        tol: float = MLP_STACKER_TOL,
        max_iter: int = 1000,
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_seeds = n_seeds
        self.alpha = alpha
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = True
        return tags

    def fit(self, X, y):
        """Train the ``n_seeds`` MLPs on ``(X, y)``."""
        check_params(self.get_params(), self._parameter_constraints)
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if np.unique(y).size < 2:
            raise ValueError(
                "SeedAveragedMLP needs at least 2 classes in y; give it data of several "
                f"classes. Received: 1 class, {np.unique(y)[0]!r}"
            )
        generator = check_random_state(self.random_state)
        seeds = generator.randint(np.iinfo(np.int32).max, size=self.n_seeds)
        self.estimators_ = [
            MLPClassifier(
                hidden_layer_sizes=tuple(self.hidden_layer_sizes),
                alpha=self.alpha,
                tol=self.tol,
                max_iter=self.max_iter,
                random_state=int(seed),
            ).fit(X, y)
            for seed in seeds
        ]
        self.classes_ = self.estimators_[0].classes_
        self.n_iter_ = max(mlp.n_iter_ for mlp in self.estimators_)
        return self

    def predict_proba(self, X):
        """The MLPs' mean class probabilities, shape ``(n_samples, n_classes)``."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False)
        return np.mean([mlp.predict_proba(X) for mlp in self.estimators_], axis=0)

    def predict(self, X):
        """The class of highest mean probability."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


def make_stacker(
    hidden_layer_sizes=(64, 32),
    *,
    kind: str = "mlp",
    seeds: int = 1,
    alpha: float = MLP_STACKER_ALPHA,
    random_state=None,
    max_iter=1000,
):
    """The final estimator: by default the study's ``MLPClassifier`` with two hidden layers.

    The MLP trains on all the data it is given, without scikit-learn's early stopping: that
    held back 10% of the (already small) held-out set and stopped too soon. On FER+ the stack
    of the base model alone then scored 0.8388 in 5-fold cross-validation on held-out data,
    below the base model's own argmax (0.8551); without it 0.8532
    (``benchmarks/bench_stacker.py``, docs/results.md). It stops once its training loss has
    gained less than :data:`MLP_STACKER_TOL` per epoch for 10 epochs.

    ``seeds`` > 1: a :class:`SeedAveragedMLP` of that many such MLPs (their mean
    probabilities). ``alpha`` is each MLP's L2 penalty (:data:`MLP_STACKER_ALPHA` in the
    presets).

    ``kind='standardized_mlp'``: a ``StandardScaler`` then the same MLP (or mean of MLPs):
    scikit-learn's advice for MLPs, whose inputs here are probabilities that sit near 0 for
    most classes. On FER+ run v11's saved members it raised the selection's stacking CV from
    0.8618 to 0.8662; on FER2013 run v20's it lowered it from 0.6903 to 0.6885
    (``benchmarks/bench_ensemble_base.py --stacker``, docs/results.md).

    ``kind='logistic'``: :class:`LogProbabilities` then an L2-regularised
    ``LogisticRegression`` (``C=0.1``; ``hidden_layer_sizes``, ``seeds`` and ``alpha``
    unused), steadier than the MLP on the few thousand images of a stacking part
    (``benchmarks/bench_members.py``, docs/results.md).
    """
    if kind not in STACKERS:
        raise ValueError(f"kind must be one of {STACKERS}. Received: kind={kind!r}")
    constraints = SeedAveragedMLP._parameter_constraints
    check_params(
        {"seeds": seeds, "alpha": alpha},
        {"seeds": constraints["n_seeds"], "alpha": constraints["alpha"]},
    )
    if kind == "logistic":
        return make_pipeline(LogProbabilities(), LogisticRegression(C=0.1, max_iter=max_iter))
    if kind == "standardized_mlp":
        mlp = make_stacker(
            hidden_layer_sizes,
            seeds=seeds,
            alpha=alpha,
            random_state=random_state,
            max_iter=max_iter,
        )
        return make_pipeline(StandardScaler(), mlp)
    if seeds > 1:
        return SeedAveragedMLP(
            hidden_layer_sizes,
            n_seeds=seeds,
            alpha=alpha,
            max_iter=max_iter,
            random_state=random_state,
        )
    return MLPClassifier(
        hidden_layer_sizes=tuple(hidden_layer_sizes),
        alpha=alpha,
        max_iter=max_iter,
        tol=MLP_STACKER_TOL,
        random_state=random_state,
    )


def make_fer_ensemble(
    base,
    experts: OneVsAllExperts | None = None,
    *,
    expert_classes: Sequence | None = None,
    prefit: bool = True,
    classes: Sequence | None = None,
    hidden_layer_sizes: Sequence[int] = (64, 32),
    others: Sequence[tuple[str, object]] = (),
    stacker: str = "mlp",
    stacker_seeds: int = 1,
    cv=5,
    random_state=None,
    n_jobs=None,
) -> FERStackingClassifier:
    """A ``StackingClassifier`` of the base model and experts under an MLP.

    Once fitted, a ``prefit=True`` stack saves to one file, without pickle, with
    :func:`skfer.persistence.save`.

    Parameters
    ----------
    base : classifier
        The base model (a ``TransferCNNClassifier``).
    experts : OneVsAllExperts, optional
        The experts; only ``expert_classes`` of them are stacked.
    expert_classes : sequence of labels, optional
        Classes whose expert joins the stack (for example from :func:`select_experts`);
        default: every expert.
    prefit : bool, default=True
        True: ``base`` and ``experts`` are already trained and are wrapped in
        :class:`~sklearn.frozen.FrozenEstimator`, so fitting the stack trains only the MLP
        (fit it on data the members did not train on). False: ``base`` and ``experts`` are
        templates and scikit-learn's cross-validated stacking trains them (``cv`` + 1 times
        each: only for those who can afford it).
    classes : sequence of labels, optional
        The sorted labels of ``y``; needed with ``prefit=False`` and experts, because
        scikit-learn passes label-encoded targets (0..K-1) to the members.
    hidden_layer_sizes : sequence of int, default=(64, 32)
        Hidden layers of the MLP.
    others : sequence of (name, classifier), default=()
        More multi-class members beside the base model (other base models, say), each as
        ``base`` is: frozen with ``prefit=True``, a template otherwise.
    stacker : {'mlp', 'standardized_mlp', 'logistic'}, default='mlp'
        The final estimator (:func:`make_stacker`): the study's MLP, the MLP on standardized
        inputs, or a logistic regression on the members' log-probabilities.
    stacker_seeds : int, default=1
        MLPs averaged in the final estimator (``seeds`` of :func:`make_stacker`); 1 is the
        study's single MLP.
    cv : int or splitter, default=5
        Folds used to produce the members' out-of-fold predictions.
    random_state : int, optional
        Seed of the MLP.
    n_jobs : int, optional
        Passed to ``StackingClassifier``.
    """
    members = [("base", FrozenEstimator(base) if prefit else base)]
    if experts is not None:
        if prefit:
            labels = experts.classes_ if expert_classes is None else expert_classes
            members += [
                (f"expert_{label}", FrozenEstimator(experts.expert(label))) for label in labels
            ]
        else:
            if classes is None or expert_classes is None:
                raise ValueError(
                    "With prefit=False, pass classes= (the sorted labels of y) and "
                    "expert_classes= (the classes to build experts for). "
                    f"Received: classes={classes!r}, expert_classes={expert_classes!r}"
                )
            sorted_classes = np.asarray(classes)
            members += [
                (
                    f"expert_{label}",
                    ClassExpert(
                        experts.estimator,
                        int(np.searchsorted(sorted_classes, label)),
                        class_weight=experts.class_weight,
                        stopping_metric=experts.stopping_metric,
                    ),
                )
                for label in expert_classes
            ]
    members += [
        (f"model_{name}", FrozenEstimator(model) if prefit else model) for name, model in others
    ]
    return FERStackingClassifier(
        members,
        final_estimator=make_stacker(
            hidden_layer_sizes, kind=stacker, seeds=stacker_seeds, random_state=random_state
        ),
        cv=cv,
        stack_method="predict_proba",
        n_jobs=n_jobs,
    )


@dataclass(frozen=True)
class ExpertSelection:
    """Outcome of :func:`select_experts`.

    Attributes
    ----------
    selected : tuple
        Classes whose experts were chosen, in the order they were added.
    selected_others : tuple of str
        Names of the other members chosen (``others`` of :func:`select_experts`).
    baseline_score : float
        Cross-validated accuracy of the MLP on the base model's outputs alone.
    steps : tuple of (label, score)
        Each accepted addition (a class label for an expert, a name for another member) and
        the cross-validated accuracy after it.
    candidates : dict
        In the first round, the accuracy with each candidate added alone.
    rule : str
        The selection rule, in words.
    other_names : tuple of str
        Names of every other member that was a candidate, chosen or not.
    out_of_fold : ndarray of shape (n_samples,) or None
        The selected stack's prediction for each held-out sample, by the stacker fitted on
        the other folds (the folds and seed of :attr:`cv_score`), so that the stack can be
        compared with its base model image by image on the same data.
    """

    selected: tuple
    selected_others: tuple
    baseline_score: float
    steps: tuple
    candidates: dict
    rule: str
    other_names: tuple = ()
    out_of_fold: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def cv_score(self) -> float:
        """Cross-validated accuracy of the stack of the selected members: the last step's, or
        the base model's alone when none was selected."""
        return self.steps[-1][1] if self.steps else self.baseline_score

    def member_name(self, key, class_names=None) -> str:
        """The name of candidate ``key``: another member's own name, or ``expert <class>``
        for the expert of class ``key`` (named by ``class_names[key]`` where given)."""
        if key in self.other_names or key in self.selected_others:
            return str(key)
        return f"expert {class_names[key] if class_names is not None else key}"

    def summary(self, class_names=None) -> str:
        """A few lines saying which experts were chosen and why.

        Parameters
        ----------
        class_names : sequence of str, optional
            Names of the classes, indexed by label: experts are then named by their class
            (``expert disgust``) instead of their label (``expert 1``).
        """

        lines = [f"rule: {self.rule}", f"base model alone: {self.baseline_score:.4f}"]
        lines += [
            f"+ {self.member_name(key, class_names)}: {score:.4f}" for key, score in self.steps
        ]
        if not self.steps:
            lines.append("no candidate improved the stack; none selected")
        return "\n".join(lines)


def select_experts(
    base,
    experts: OneVsAllExperts,
    X,
    y,
    *,
    others: dict | None = None,
    hidden_layer_sizes: Sequence[int] = (64, 32),
    stacker: str = "mlp",
    stacker_seeds: int = 1,
    cv: int = 5,
    min_gain: float = 0.002,
    random_state: int | None = 0,
    n_jobs: int | None = None,
) -> ExpertSelection:
    """Greedy forward selection of experts by the stack's cross-validated accuracy.

    Starting from the base model alone, each round adds the candidate (an expert, or one of
    ``others``, a dict of name to fitted multi-class classifier) whose outputs raise the
    ``cv``-fold accuracy of the stacker (``stacker`` and ``stacker_seeds``, as for
    :func:`make_fer_ensemble`) the most, on held-out ``(X, y)`` that no member trained or
    stopped on; it stops when the best gain is ``<= min_gain``. ``random_state`` seeds the
    folds and the stacker. The members predict ``X`` once; only the stacker is refitted, once
    per candidate and fold, in ``n_jobs`` processes (joblib's meaning: ``None`` one, ``-1``
    all cores), which changes the time and not the result. Once chosen, the selected stack
    predicts each fold from the other folds once more (``out_of_fold``).

    Returns
    -------
    ExpertSelection
    """
    make_stacker(hidden_layer_sizes, kind=stacker, seeds=stacker_seeds)  # checks both first
    y = np.asarray(y)
    base_columns = base.predict_proba(X)
    columns = {label: experts.expert(label).predict_proba(X) for label in experts.classes_.tolist()}
    for name, model in (others or {}).items():
        if name in columns:
            raise ValueError(
                f"The names of others must differ from the experts' class labels; rename it. "
                f"Received: {name!r}"
            )
        columns[name] = model.predict_proba(X)
    folds = list(StratifiedKFold(cv, shuffle=True, random_state=random_state).split(y, y))
    parallel = Parallel(n_jobs=n_jobs)

    def stack_inputs(labels: list) -> np.ndarray:
        return np.column_stack([base_columns] + [columns[k] for k in labels])

    def final_estimator():
        return make_stacker(
            hidden_layer_sizes, kind=stacker, seeds=stacker_seeds, random_state=random_state
        )

    def accuracies(label_sets: list[list]) -> list[float]:
        """The stack's mean accuracy over the folds, for each set of experts."""
        fold_scores = parallel(
            delayed(cross_val_score)(final_estimator(), stack_inputs(labels), y, cv=[fold])
            for labels in label_sets
            for fold in folds
        )
        per_set = np.reshape(np.concatenate(fold_scores), (len(label_sets), len(folds)))
        return per_set.mean(axis=1).tolist()

    selected: list = []
    (baseline,) = accuracies([selected])
    current = baseline
    steps: list[tuple] = []
    candidates: dict = {}
    while len(selected) < len(columns):
        remaining = [k for k in columns if k not in selected]
        trial = dict(zip(remaining, accuracies([selected + [k] for k in remaining]), strict=True))
        if not candidates:
            candidates = trial
        best = max(trial, key=trial.get)
        if trial[best] - current <= min_gain:
            break
        selected.append(best)
        current = trial[best]
        steps.append((best, current))
    rule = (
        f"greedy forward selection: add the member that most raises the {cv}-fold "
        f"cross-validated accuracy of the {stacker_name(stacker, stacker_seeds)} stacker on "
        "held-out data; "
        "stop when the gain "
        f"is at most {min_gain}; seed {random_state}"
    )
    experts_chosen = tuple(k for k in selected if k not in (others or {}))
    others_chosen = tuple(k for k in selected if k in (others or {}))
    out_of_fold = cross_val_predict(
        final_estimator(), stack_inputs(selected), y, cv=folds, n_jobs=n_jobs
    )
    return ExpertSelection(
        experts_chosen,
        others_chosen,
        baseline,
        tuple(steps),
        candidates,
        rule,
        tuple(others or {}),
        out_of_fold,
    )
