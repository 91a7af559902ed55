"""Phased training of a transfer model, independent of the scikit-learn estimator.

:func:`train` runs a sequence of :class:`Phase` objects on a model from
:func:`~skfer.model.build_transfer_model`: per phase it sets which backbone blocks learn,
compiles, and fits with early stopping; across phases it keeps a later phase only if it beats
the best validation score of the earlier ones. A phase with a frozen backbone trains the
head on cached backbone features (:mod:`skfer.cache`), and a phase that trains only the top
blocks trains them on the cached maps of the frozen blocks below (:func:`cached_split`); the
frozen phase before it computes its features from those maps, so the blocks below run once. A
checkpoint (:class:`~skfer.checkpoint.TrainingCheckpoint`) makes the whole run resumable, and
Ctrl-C stops it cleanly with the best weights seen so far.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from .backbones import BackboneSpec
from .backend import OrderedBatches, compiles_per_batch_shape, keras_input
from .cache import FeatureCache, feature_cache
from .checkpoint import TrainingCheckpoint
from .distribute import strategy_scope
from .model import (
    BACKBONE_LAYER,
    POOLING_LAYER,
    block_boundary,
    is_augmented,
    set_backbone_trainable,
    split_at_block,
    split_at_pooling,
)
from .stopping import stopping_metric

__all__ = [
    "BLOCK_MAP_DTYPE",
    "CACHED_STEPS_PER_EXECUTION",
    "OPTIMIZERS",
    "CachedSplit",
    "FeatureStage",
    "Phase",
    "RecentWeights",
    "ShuffledBatches",
    "TrainingResult",
    "TrainingSettings",
    "WeightAverage",
    "cached_split",
    "feature_graph",
    "mean_weights",
    "mixup",
    "train",
]

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
    "rmsprop": keras.optimizers.RMSprop,
}

CACHED_STEPS_PER_EXECUTION = 32
"""Head-only training steps per graph call on cached features (Keras' ``steps_per_execution``).

A step of the head alone is so cheap that Keras' per-step Python work would dominate: running
32 steps per call cut the head's training time by 30-45% here. The steps, their order and the
epoch metrics are unchanged; only batch-level callbacks fire once per 32 steps. Not used with
a distribution strategy, where Keras fails on it.
"""


BLOCK_MAP_DTYPE = "float16"
"""How the cached maps at a block boundary are stored.

The maps of all 28,709 FER2013 Training images at the face-trained MobileNet's block 12 take
2.9 GB in float16 (5.8 GB in float32). float16 rather than bfloat16: block outputs are ReLU
(ReLU6 in MobileNet) activations, far inside float16's range (65504; an overflow raises), and
float16 keeps 11 significant bits against bfloat16's 8, a relative rounding error of 2^-11.
"""

SCHEDULES = ("constant", "cosine")


def feature_graph(model: keras.Model, backbone: str, boundary: str | None = None) -> dict:
    """What defines the cached features of ``model`` besides its weights and the images: the
    feature cache's key.

    Parameters
    ----------
    model : keras.Model
        From :func:`~skfer.model.build_transfer_model`.
    backbone : str
        The backbone's registry name.
    boundary : str or None
        None for the pooled features; else the backbone layer whose output maps are cached
        (:func:`~skfer.model.block_boundary`), so that maps of different split points never
        share an entry.
    """
    pooling = model.get_layer(POOLING_LAYER)
    graph = {
        "backbone": backbone,
        "input_size": model.get_layer("backbone_input").size,
        "dtype_policy": pooling.dtype_policy.name,
    }
    if boundary is None:
        return {**graph, "pooling": type(pooling).__name__}
    return {**graph, "block_boundary": boundary}


@dataclass(frozen=True)
class FeatureStage:
    """One cached step from images (or the previous stage's output) towards the trained part.

    Attributes
    ----------
    model : keras.Model
        Its input to its output: images to pooled features or to block maps, or block maps
        to pooled features.
    graph : dict
        The cache key's description of ``model`` (:func:`feature_graph`).
    dtype : str
        Storage dtype of the output: :data:`BLOCK_MAP_DTYPE` for maps (block maps, and the
        unpooled map of ``pooling='spatial'``), float32 for pooled vectors
        (:func:`pooled_storage_dtype`).
    """

    model: keras.Model
    graph: dict
    dtype: str


@dataclass(frozen=True)
class CachedSplit:
    """A model cut below its trained layers: frozen stages whose outputs are cached, and the
    part that trains (or predicts) on the last one. All share their layers with the model.

    Attributes
    ----------
    stages : tuple of FeatureStage
        Images to features: one stage (pooled features, or the maps at a block boundary), or
        two (the maps, then the frozen blocks above them to the pooled features).
    trained : keras.Model
        Features to class probabilities.
    """

    stages: tuple[FeatureStage, ...]
    trained: keras.Model

    @property
    def dtype(self) -> str:
        """Storage dtype of the trained part's input."""
        return self.stages[-1].dtype

    @property
    def graph(self) -> dict:
        """The cache key's description of the trained part's input."""
        return self.stages[-1].graph

    def features(self, images: np.ndarray, *, cache: FeatureCache, batch_size: int):
        """The trained part's input for ``images``, each stage's output through ``cache``."""
        x = images
        for stage in self.stages:
            x = cache.features(
                stage.model, x, graph=stage.graph, batch_size=batch_size, dtype=stage.dtype
            )
        return x


def pooled_storage_dtype(model: keras.Model) -> str:
    """How the pooled features of ``model`` are cached: float32 vectors, or
    :data:`BLOCK_MAP_DTYPE` where the pooling keeps the map (``pooling='spatial'``)."""
    return BLOCK_MAP_DTYPE if len(model.get_layer(POOLING_LAYER).output.shape) == 4 else "float32"


def cached_split(
    model: keras.Model,
    spec: BackboneSpec,
    trainable_blocks: int | None,
    *,
    via_blocks: int | None = None,
) -> CachedSplit | None:
    """Split ``model`` for training its top ``trainable_blocks`` blocks on cached features.

    Parameters
    ----------
    model : keras.Model
        From :func:`~skfer.model.build_transfer_model` on ``spec``.
    spec : BackboneSpec
        The model's backbone.
    trainable_blocks : int or None
        0: the head on pooled features (:func:`~skfer.model.split_at_pooling`); 1 to
        ``len(spec.block_ends) - 1``: those blocks and the head on the maps at the boundary
        below them (:func:`~skfer.model.split_at_block`).
    via_blocks : int or None
        With ``trainable_blocks=0``: compute the pooled features in two cached stages, the
        maps below the top ``via_blocks`` blocks and then those (frozen) blocks on the maps,
        so that a later phase training them reuses the maps; None (or no block below them):
        in one stage.

    Returns
    -------
    CachedSplit or None
        None where no block stays frozen (None, or every block): nothing to cache.
    """
    if trainable_blocks == 0:
        boundary = block_boundary(spec.block_ends, via_blocks)
        pooled_graph = feature_graph(model, spec.name)
        pooled_dtype = pooled_storage_dtype(model)
        if boundary is None:
            frozen, trained = split_at_pooling(model)
            return CachedSplit((FeatureStage(frozen, pooled_graph, pooled_dtype),), trained)
        map_model, pooled_from_maps = split_at_block(
            model, spec.block_ends, via_blocks, maps_dtype=BLOCK_MAP_DTYPE, until=POOLING_LAYER
        )
        _, trained = split_at_pooling(model)
        maps_graph = feature_graph(model, spec.name, boundary)
        from_maps_graph = {**pooled_graph, "from_maps_of": boundary}
        stages = (
            FeatureStage(map_model, maps_graph, BLOCK_MAP_DTYPE),
            FeatureStage(pooled_from_maps, from_maps_graph, pooled_dtype),
        )
        return CachedSplit(stages, trained)
    boundary = block_boundary(spec.block_ends, trainable_blocks)
    if boundary is None:
        return None
    frozen, trained = split_at_block(
        model, spec.block_ends, trainable_blocks, maps_dtype=BLOCK_MAP_DTYPE
    )
    graph = feature_graph(model, spec.name, boundary)
    return CachedSplit((FeatureStage(frozen, graph, BLOCK_MAP_DTYPE),), trained)


def warmup_cosine(learning_rate: float, steps_per_epoch: int, epochs: int):
    """One epoch of linear warm-up from ``learning_rate / 10`` (the curve dips where the
    backbone starts to learn), then a cosine decay to 0 over the remaining steps."""
    warmup = steps_per_epoch if epochs > 1 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup else learning_rate,
        decay_steps=max(1, steps_per_epoch * epochs - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


@dataclass(frozen=True)
class Phase:
    """One retraining phase.

    Parameters
    ----------
    name : str
        Names the phase in the history, the checkpoint and the log ('short', 'long').
    epochs : int
        Epochs to run; 0 skips the phase.
    learning_rate : float
        Learning rate of the phase's fresh optimizer.
    trainable_blocks : int or None
        Backbone blocks that learn, counted from the top: 0 freezes the backbone (the head
        alone learns, on cached features where possible), None trains all of it.
    schedule : {'constant', 'cosine'}
        The learning rate over the phase: constant, or :func:`warmup_cosine`.
    via_blocks : int or None
        With a frozen backbone: where its cached features are cut (``cached_split``'s
        ``via_blocks``), the boundary of a later phase that trains the top ``via_blocks``
        blocks, so that both phases run the blocks below it once.
    average_epochs : int or None
        The phase ends on the mean of the weights at the end of its last ``average_epochs``
        epochs (stochastic weight averaging, Izmailov et al. 2018), where that mean scores at
        least as well on the validation data as the phase's best epoch (without early
        stopping: always). None: off.
    """

    name: str
    epochs: int
    learning_rate: float
    trainable_blocks: int | None
    schedule: str = "constant"
    via_blocks: int | None = None
    average_epochs: int | None = None

    @property
    def backbone_frozen(self) -> bool:
        """Whether the backbone stays fixed in this phase."""
        return self.trainable_blocks == 0


@dataclass(frozen=True)
class TrainingSettings:
    """How every phase trains.

    Parameters
    ----------
    optimizer : {'adam', 'adamw', 'sgd', 'rmsprop'}
        A key of :data:`OPTIMIZERS`; each phase gets a fresh one.
    batch_size : int
        Images per gradient step.
    feature_batch_size : int or None
        Images per batch of the frozen part's forward pass into the feature cache; None:
        ``batch_size``.
    class_weight : dict of int to float or None
        Loss weight of each class index.
    patience : int or None
        Epochs without a better validation score before a phase stops; None: no early
        stopping (and no choice between phases).
    stopping_metric : {'accuracy', 'balanced_accuracy'}
        The validation score of early stopping and of the choice between phases
        (:mod:`skfer.stopping`).
    cache_features : bool
        Unless the model augments or ``mixup_alpha`` mixes the images, train frozen-backbone
        phases on cached pooled features, and phases that train only the top blocks on the
        cached maps of the blocks below (:func:`cached_split`).
    jit_compile : bool or 'auto'
        Passed to ``Model.compile`` (see :func:`skfer.backend.resolve_jit_compile`).
    label_smoothing : float
        Categorical cross-entropy against ``(1 - label_smoothing) * target + label_smoothing
        / n_classes`` in every phase (class indices become one-hot rows).
    mixup_alpha : float
        0: off; else every training batch is mixed with a shuffled copy of itself
        (:func:`mixup`), targets as one-hot or soft rows.
    feature_mixup_alpha : float
        0: off; else the same mixup of the cached features or block maps that a phase trains
        on (manifold mixup at the cache boundary); every phase must then train on cached
        inputs (a ValueError otherwise).
    flip_augmentation : bool
        Each epoch, every training image is replaced by its horizontal mirror image with
        probability 1/2; on cached features, by the cached features of its mirror image
        (:class:`ShuffledBatches`).
    verbose : int
        0 silent, 1 a line per phase and epoch, 2 Keras' progress bar.
    """

    optimizer: str = "adam"
    batch_size: int = 64
    feature_batch_size: int | None = None
    class_weight: dict[int, float] | None = None
    patience: int | None = 5
    stopping_metric: str = "accuracy"
    cache_features: bool = True
    jit_compile: bool | str = "auto"
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    feature_mixup_alpha: float = 0.0
    flip_augmentation: bool = False
    verbose: int = 1


@dataclass
class TrainingResult:
    """What :func:`train` did.

    Attributes
    ----------
    history : dict of str to list
        Per epoch across phases: Keras' metrics and ``phase``, the name of each epoch's phase.
    interrupted_phase : str or None
        The phase that Ctrl-C stopped, if any.
    weight_averages : list of WeightAverage
        One per phase that averaged its last epochs' weights.
    """

    history: dict[str, list] = field(default_factory=lambda: {"phase": []})
    interrupted_phase: str | None = None
    weight_averages: list[WeightAverage] = field(default_factory=list)


@dataclass(frozen=True)
class WeightAverage:
    """A phase's mean of its last epochs' weights, and whether the phase ended on it.

    Attributes
    ----------
    phase : str
        The phase's name.
    epochs : tuple of int
        The epochs averaged, counted from 1 across phases as in the log.
    score : float or None
        The mean's validation score (``TrainingSettings.stopping_metric``); None without
        validation data.
    best_epoch_score : float or None
        The phase's best epoch's validation score; None without early stopping.
    kept : bool
        Whether the phase ended on the mean (else on its best epoch's weights).
    """

    phase: str
    epochs: tuple[int, ...]
    score: float | None
    best_epoch_score: float | None
    kept: bool

    def as_dict(self) -> dict:
        """Plain JSON-ready values (``epochs`` as a list, as JSON gives it back)."""
        return {**asdict(self), "epochs": list(self.epochs)}


def train(
    model: keras.Model,
    spec: BackboneSpec,
    phases: Sequence[Phase],
    data: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    *,
    settings: TrainingSettings,
    seed: int,
    strategy=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint: TrainingCheckpoint | None = None,
    cache: FeatureCache = feature_cache,
) -> TrainingResult:
    """Train ``model`` through ``phases`` in order; the model ends with the chosen weights.

    Parameters
    ----------
    model : keras.Model
        From :func:`~skfer.model.build_transfer_model` on ``spec``, built under ``strategy``.
    spec : BackboneSpec
        The model's backbone (its name and block boundaries).
    phases : sequence of Phase
        Run in order.
    data : tuple (images, targets)
        Training images and integer class indices.
    validation : tuple (images, targets) or None
        Data for early stopping and the choice between phases.
    settings : TrainingSettings
        Optimizer, batch size, class weights, patience and the rest.
    seed : int
        Seeds the shuffling of each phase.
    strategy : tf.distribute.Strategy or None
        Compile and fit inside its scope.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks for every phase.
    checkpoint : TrainingCheckpoint or None
        Saves the state after every epoch and resumes a crashed run; removed at the end.
    cache : FeatureCache
        Where frozen-backbone features and block maps are kept.

    Returns
    -------
    TrainingResult
    """
    if settings.label_smoothing or settings.mixup_alpha or settings.feature_mixup_alpha:
        # A categorical loss on target rows.
        n_classes = model.output_shape[-1]
        data = (data[0], _target_rows(data[1], n_classes))
        if validation is not None:
            validation = (validation[0], _target_rows(validation[1], n_classes))
    result = TrainingResult()
    best = None  # (validation score, weights) of the best finished phase so far
    for index, phase in enumerate(phases):
        if phase.epochs == 0:
            continue
        if checkpoint is not None and checkpoint.restore_finished_phase(
            model, phase.name, verbose=settings.verbose
        ):
            result.history = checkpoint.history()
        else:
            _set_trainable(model, spec, phase)
            with strategy_scope(strategy):
                interrupted = _fit_phase(
                    model,
                    spec,
                    phase,
                    data,
                    validation,
                    settings=settings,
                    seed=seed + 1 + index,
                    multi_step=strategy is None,
                    callbacks=list(callbacks),
                    checkpoint=checkpoint,
                    cache=cache,
                    history=result.history,
                    weight_averages=result.weight_averages,
                )
            if interrupted:
                result.interrupted_phase = phase.name
                if settings.patience is not None:
                    _keep_the_better_phase(model, phase.name, result.history, best, False, settings)
                return result
            if checkpoint is not None:
                checkpoint.finish_phase(model, phase.name, result.history)
        if settings.patience is not None:
            later_phase = any(later.epochs for later in phases[index + 1 :])
            kept_means = [
                average.score
                for average in result.weight_averages
                if average.phase == phase.name and average.kept and average.score is not None
            ]
            best = _keep_the_better_phase(
                model, phase.name, result.history, best, later_phase, settings, kept_means
            )
    if checkpoint is not None:
        checkpoint.remove()
    return result


def _keep_the_better_phase(model, phase_name, history, best, later_phase, settings, kept_means=()):
    """Early stopping across phases: if no epoch of ``phase_name`` (nor the mean of its
    weights it ended on, ``kept_means``' scores) beat ``best``, the best validation score
    (``settings.stopping_metric``) of an earlier phase, go back to that phase's weights.

    Returns the new ``best``, ``(score, weights)``, kept only while a later phase follows.
    """
    key = f"val_{settings.stopping_metric}"
    if key not in history:
        return best
    scores = [
        score
        for score, name in zip(history[key], history["phase"], strict=True)
        if name == phase_name
    ] + list(kept_means)
    best_score = max(scores, default=-np.inf)  # none: Ctrl-C before its first epoch ended
    if best is not None and best_score <= best[0]:
        model.set_weights(best[1])
        if settings.verbose:
            print(
                f"[skfer] the {phase_name} retraining never beat the earlier one on the "
                f"validation data ({best_score:.4f} <= {best[0]:.4f}): keeping the earlier "
                f"phase's weights"
            )
        return best
    return (best_score, model.get_weights()) if later_phase and scores else None


def _set_trainable(model, spec, phase) -> None:
    if phase.backbone_frozen:
        model.get_layer(BACKBONE_LAYER).trainable = False
    else:
        set_backbone_trainable(model, spec.block_ends, phase.trainable_blocks)


def _fit_phase(
    model, spec, phase, data, validation, *, settings, seed, multi_step, callbacks, checkpoint,
    cache, history, weight_averages,
) -> bool:  # fmt: skip
    """Compile and fit one phase; append its epochs to ``history`` and its
    :class:`WeightAverage` (if it averages) to ``weight_averages``. True if interrupted."""
    split = None
    if settings.cache_features and not is_augmented(model) and not settings.mixup_alpha:
        split = cached_split(model, spec, phase.trainable_blocks, via_blocks=phase.via_blocks)
    X_train, y_train = data
    mirrored = X_train[:, :, ::-1] if settings.flip_augmentation else None
    if split is not None:
        # The frozen part's output cannot change during this phase: compute it once.
        def features(images):
            return split.features(
                images, cache=cache, batch_size=settings.feature_batch_size or settings.batch_size
            )

        X_train = features(X_train)
        if mirrored is not None:
            mirrored = features(mirrored)
        if validation is not None:
            validation = (features(validation[0]), validation[1])
        trained_model = split.trained
    elif settings.feature_mixup_alpha:
        raise ValueError(
            f"feature_mixup_alpha mixes cached inputs, but the {phase.name} phase trains on "
            "images (the feature cache is off, the images are augmented or mixed, or every "
            "block trains); set feature_mixup_alpha=0 or train fewer blocks on cached maps. "
            f"Received: feature_mixup_alpha={settings.feature_mixup_alpha!r}"
        )
    else:
        trained_model = model
    # Several steps per call fail under a tf.distribute strategy in Keras 3.15 ("You must
    # feed a value for placeholder tensor", keras-team/keras#19246): one step there.
    head_only = split is not None and phase.backbone_frozen
    steps_per_execution = CACHED_STEPS_PER_EXECUTION if head_only and multi_step else 1
    learning_rate = phase.learning_rate
    if phase.schedule == "cosine":
        steps_per_epoch = -(-len(y_train) // settings.batch_size)
        learning_rate = warmup_cosine(phase.learning_rate, steps_per_epoch, phase.epochs)
    optimizer = OPTIMIZERS[settings.optimizer](learning_rate=learning_rate)
    if model.dtype_policy.name == "mixed_float16":
        # Keras wraps it for a model built under this policy, not for the head part alone.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trained_model.compile(
        optimizer=optimizer,
        # Rows of class probabilities (soft, one-hot or mixed targets) or class indices.
        loss=(
            keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing)
            if y_train.ndim == 2
            else "sparse_categorical_crossentropy"
        ),
        metrics=["accuracy"]
        + (
            []
            if settings.stopping_metric == "accuracy"
            else [stopping_metric(settings.stopping_metric, trained_model.output_shape[-1])]
        ),
        jit_compile=settings.jit_compile,
        steps_per_execution=steps_per_execution,
    )
    phase_callbacks = []
    early_stopping = None
    if settings.patience is not None and validation is not None:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=f"val_{settings.stopping_metric}",
            mode="max",
            patience=settings.patience,
            restore_best_weights=True,
        )
        phase_callbacks.append(early_stopping)
    start = len(history["phase"])
    if checkpoint is not None:
        phase_callbacks += checkpoint.callbacks(history, phase.name, verbose=settings.verbose)
    phase_callbacks += callbacks  # after the backup: they see a saved epoch
    # This phase's own record of its epochs (Keras uses it instead of adding one), empty until
    # an epoch ends: an interrupt before Keras' History starts then records nothing rather
    # than another phase's epochs.
    recorder = keras.callbacks.History()
    recorder.epoch = []
    phase_callbacks.append(recorder)
    recent = None
    if phase.average_epochs:
        recent = RecentWeights(phase.average_epochs)
        phase_callbacks.append(recent)
    if settings.verbose:
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(
            f"[skfer] {phase.name} retraining of {spec.name}: up to {phase.epochs} epoch(s) at "
            f"learning rate {phase.learning_rate:g}"
            + (" (warm-up, cosine decay)" if phase.schedule == "cosine" else "")
            + f", {trainable:,} trainable parameters"
            + (
                f", label smoothing {settings.label_smoothing:g}"
                if settings.label_smoothing
                else ""
            )
            + (f", mixup alpha {settings.mixup_alpha:g}" if settings.mixup_alpha else "")
            + (
                f", mixup of the cached inputs, alpha {settings.feature_mixup_alpha:g}"
                if settings.feature_mixup_alpha
                else ""
            )
            + (", random mirror images" if mirrored is not None else "")
            + ("" if split is None else f", on cached {_described(split)}")
            + (
                f", ending on the mean of its last {phase.average_epochs} epochs' weights "
                "where that scores at least as well"
                if phase.average_epochs
                else ""
            )
        )
    done = len(history["phase"])  # past ``start`` when resuming a phase
    batches = ShuffledBatches(
        X_train,
        y_train,
        settings.batch_size,
        seed=seed,
        epoch=done,
        full_batches=compiles_per_batch_shape(),
        mixup_alpha=settings.mixup_alpha or settings.feature_mixup_alpha,
        mirrored=mirrored,
        class_weight=settings.class_weight,
    )
    try:
        with contextlib.ExitStack() as inputs:
            if validation is not None:
                # In batches: Keras would cast an array of another float dtype (cached float16
                # maps) whole, and knows no DiskArray.
                validation, _ = inputs.enter_context(
                    keras_input(OrderedBatches(*validation, batch_size=settings.batch_size))
                )
            data, epoch_callbacks = inputs.enter_context(keras_input(batches))
            fitted = trained_model.fit(
                data,
                epochs=start + phase.epochs,
                initial_epoch=done,
                shuffle=False,  # the batches shuffle themselves, with their own generator
                callbacks=epoch_callbacks + phase_callbacks,
                validation_data=validation,
                verbose={0: 0, 1: 2}.get(settings.verbose, 1),
            )
            if recent is not None and len(recent.weights) >= 2:
                weight_averages.append(
                    _end_on_mean(trained_model, recent, validation, early_stopping, phase, settings)
                )
    except KeyboardInterrupt:
        fitted = recorder  # the epochs that finished
        if early_stopping is not None and early_stopping.best_weights is not None:
            trained_model.set_weights(early_stopping.best_weights)
        _record(history, phase.name, fitted)
        return True
    _record(history, phase.name, fitted)
    return False


class RecentWeights(keras.callbacks.Callback):
    """Keeps the model's weights at the end of each of its last ``count`` epochs."""

    def __init__(self, count: int):
        super().__init__()
        self.weights = deque(maxlen=count)
        self.epochs = deque(maxlen=count)

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.epochs.append(epoch)


def mean_weights(weights: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several copies of a model's weights; arrays that are not
    floating point (counters, seeds) are taken from the last copy."""
    return [
        np.mean(arrays, axis=0, dtype=np.float64).astype(arrays[-1].dtype)
        if np.issubdtype(arrays[-1].dtype, np.floating)
        else arrays[-1]
        for arrays in zip(*weights, strict=True)
    ]


def _end_on_mean(model, recent, validation, early_stopping, phase, settings) -> WeightAverage:
    """Set ``model`` to the mean of ``recent``'s weights where it scores at least as well on
    ``validation`` as the early stopping's best epoch (which ``model`` holds on entry)."""
    epochs = tuple(epoch + 1 for epoch in recent.epochs)
    best_weights = model.get_weights()
    model.set_weights(mean_weights(recent.weights))
    score = None
    if validation is not None:
        logs = model.evaluate(validation, verbose=0, return_dict=True)
        score = float(logs[settings.stopping_metric])
    best_score = None if early_stopping is None else float(early_stopping.best)
    kept = best_score is None or score >= best_score
    if not kept:
        model.set_weights(best_weights)
    if settings.verbose:
        print(
            f"[skfer] {phase.name} retraining: the mean of the weights of epochs "
            f"{epochs[0]}-{epochs[-1]}"
            + ("" if score is None else f" scores {score:.4f} on the validation data")
            + (
                ""
                if best_score is None
                else f" against the best epoch's {best_score:.4f}: "
                + ("ending on the mean" if kept else "keeping the best epoch")
            )
        )
    return WeightAverage(phase.name, epochs, score, best_score, kept)


def mixup(x: np.ndarray, y: np.ndarray, alpha: float, rng: np.random.Generator):
    """Mixup of one batch (Zhang et al. 2018): ``lam * x + (1 - lam) * x[p]`` and the same of
    the target rows ``y``, with ``lam ~ Beta(alpha, alpha)`` and ``p`` a permutation of the
    batch, both drawn from ``rng``.

    Returns
    -------
    x, y : ndarray
        The mixed batch, ``x`` as float32 (stored images in 0..255 stay in 0..255).
    """
    lam = np.float32(rng.beta(alpha, alpha))
    partner = rng.permutation(len(y))
    # In place on two float32 copies: a batch of block-12 maps is 12.8 MB in float32, and
    # each temporary of ``lam * x + (1 - lam) * x[partner]`` costs as much again. The same
    # products and sum, so the same values.
    x = x.astype(np.float32)
    mixed = x[partner]
    mixed *= 1 - lam
    x *= lam
    mixed += x
    return mixed, lam * y + (1 - lam) * y[partner]


def _target_rows(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices as one-hot float32 rows; rows of class probabilities as they are."""
    return targets if targets.ndim == 2 else np.eye(n_classes, dtype=np.float32)[targets]


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of ``(x, y)`` in a new order each epoch, from a generator of its own.

    The order of epoch ``e`` depends only on ``seed`` and ``e``, and the mirroring and mixup of
    its batch ``b`` only on ``seed``, ``e`` and ``b``, not on any global random state, so a
    resumed phase shuffles, mirrors and mixes as the uninterrupted one would have.

    Parameters
    ----------
    x, y : ndarray
        Inputs and targets, indexed along the first axis.
    batch_size : int
        Rows per batch; the last batch of an epoch may be smaller, unless ``full_batches``.
    seed : int
        Seeds the orders.
    epoch : int
        The epoch the first batches belong to.
    full_batches : bool
        Fill the last batch of each epoch with the first rows of that epoch's order (seen
        twice then), so that every batch has ``batch_size`` rows: one batch shape, one
        compiled training step on JAX.
    mixup_alpha : float
        0: batches as they are; else each batch is mixed with a shuffled copy of itself
        (:func:`mixup`; ``y`` must then be rows of class probabilities).
    mirrored : ndarray or None
        Aligned with ``x``: the mirror images, or their features. Each row of a batch comes
        from it instead of ``x`` with probability 1/2 (before any mixup).
    class_weight : dict of int to float or None
        Each batch then carries sample weights, the weight of each row's class (the largest
        target of a row of probabilities; 1 for a class not in the dict), as Keras weighs
        ``fit(class_weight=)``.
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        *,
        seed: int,
        epoch: int = 0,
        full_batches: bool = False,
        mixup_alpha: float = 0.0,
        mirrored=None,
        class_weight: dict[int, float] | None = None,
    ):
        super().__init__()
        if mirrored is not None and mirrored.shape != x.shape:
            raise ValueError(
                f"mirrored must be aligned with x, of the same shape. Received: x of shape "
                f"{x.shape}, mirrored of shape {mirrored.shape}"
            )
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.full_batches = full_batches
        self.mixup_alpha = mixup_alpha
        self.mirrored = mirrored
        self.class_weight = class_weight
        self.epoch = epoch
        self.order = self._permutation()

    def _permutation(self) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.y))
        if self.full_batches:
            return np.resize(order, len(self) * self.batch_size)  # repeats from the start
        return order

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.mirrored is None:
            x = self.x[rows]
        else:
            flips = np.random.default_rng([self.seed, self.epoch, index, 1]).random(len(rows))
            flipped = flips < 0.5
            # Each row read once, from the array it comes from: on maps kept on disk
            # (DiskArray) a batch reads a third fewer bytes than reading every row of x first.
            x = np.empty((len(rows), *self.x.shape[1:]), self.x.dtype)
            x[~flipped] = self.x[rows[~flipped]]
            x[flipped] = self.mirrored[rows[flipped]]
        y = self.y[rows]
        if self.mixup_alpha:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x, y = mixup(x, y, self.mixup_alpha, rng)
        if self.class_weight is None:
            return x, y
        classes = y if y.ndim == 1 else y.argmax(axis=1)
        weights = [self.class_weight.get(int(c), 1.0) for c in classes]
        return x, y, np.asarray(weights, keras.config.floatx())

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._permutation()


def _described(split: CachedSplit) -> str:
    boundary = split.graph.get("block_boundary")
    if boundary is not None:
        return f"{BLOCK_MAP_DTYPE} maps of {boundary}"
    below = split.graph.get("from_maps_of")
    return "backbone features" + ("" if below is None else f" (from the maps of {below})")


def _record(history, phase_name, fitted) -> None:
    """Append a Keras ``History``'s epochs to ``history`` (a resumed fit may repeat some)."""
    if not fitted.epoch:
        return
    first = fitted.epoch[0]
    for key in list(history):
        del history[key][first:]
    for key, values in fitted.history.items():
        history.setdefault(key, [np.nan] * first).extend(float(v) for v in values)
    history["phase"].extend([phase_name] * len(fitted.epoch))
