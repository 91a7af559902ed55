"""``TransferCNNClassifier``: two-phase transfer learning of a pretrained CNN, for scikit-learn."""

from __future__ import annotations

import os
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import TransformerTags, check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .backbones import BackboneSpec, get_backbone
from .backend import predict_in_full_batches, resolve_jit_compile
from .cache import feature_cache, fingerprint, predict_in_chunks
from .checkpoint import TrainingCheckpoint
from .distribute import DISTRIBUTIONS, even_rows, make_strategy, strategy_scope
from .images import as_image_batch, check_one_label_per_image, warn_unlike_training
from .model import POOLING_CHOICES, block_boundary, build_transfer_model
from .model_file import write_classifier
from .params import InstanceOf, Interval, Options, SequenceOf, check_params
from .soft_targets import check_target_distribution, soft_target_data
from .stopping import STOPPING_METRICS
from .training import (
    OPTIMIZERS,
    SCHEDULES,
    CachedSplit,
    Phase,
    TrainingSettings,
    cached_split,
    train,
)

__all__ = ["TransferCNNClassifier"]

_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _feature_split(
    model: keras.Model, spec: BackboneSpec, trainable_blocks: int, via_blocks: int | None
) -> CachedSplit:
    """``cached_split(model, spec, trainable_blocks, via_blocks=via_blocks)``, made once per
    model and split (new Keras models would retrace)."""
    splits = _SPLITS.setdefault(model, {})
    key = (trainable_blocks, via_blocks)
    if key not in splits:
        splits[key] = cached_split(model, spec, trainable_blocks, via_blocks=via_blocks)
    return splits[key]


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TEST_TIME_CROPS = (1, 5)


def _five_crops(images: np.ndarray, fraction: float) -> list[np.ndarray]:
    """The four corner crops and the centre crop of ``images`` ``(n, H, W, C)``, of sides
    ``fraction`` of ``H`` and ``W`` (rounded, at least 1 pixel); views, not copies."""
    height, width = images.shape[1:3]
    crop_height, crop_width = max(1, round(fraction * height)), max(1, round(fraction * width))
    bottom, right = height - crop_height, width - crop_width
    corners = ((0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2))
    return [images[:, top : top + crop_height, left : left + crop_width] for top, left in corners]


class TransferCNNClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained CNN with a new head, retrained in two phases, for facial expressions.

    ``fit`` runs the *short retraining* (backbone frozen, only the head learns) and then the
    *long retraining* (backbone unfrozen, everything learns at a lower rate). Images stay at
    their stored size and dtype in memory; resizing, gray to RGB and the backbone's
    preprocessing run per batch inside the Keras graph.

    Parameters
    ----------
    backbone : str, default='vggface'
        A name from :func:`skfer.list_backbones`.
    weights : str, path or None, default='default'
        ``'default'`` for the backbone's pretrained weights (downloaded once, hash-checked),
        another of its source names, a local weight file, or None for random initialisation.
    input_size : int or None, default=None
        Side of the square backbone input in pixels; None uses the backbone's default (224
        for most). Smaller is much faster on a CPU.
    head : sequence of int, default=(1024, 1024)
        Hidden units of the head's Dense layers, each followed by dropout.
    dropout : float, default=0.5
        Dropout rate in the head.
    pooling : {'avg', 'max', 'flatten', 'grid', 'spatial'}, default='avg'
        How the backbone's feature map becomes a vector. ``'grid'`` averages each quarter of
        the map (2 x 2 cells, :class:`~skfer.layers.GridAveragePooling2D`): four times the
        channels, coarsely placed. ``'spatial'`` keeps the map's layout:
        the head opens with a trained 1x1 convolution to 128 channels, then flattens
        (:func:`~skfer.model.build_transfer_model`); its cached features are the whole map,
        stored as float16. Stacked with an ``'avg'`` model of the same backbone it errs on
        other images (docs/results.md).
    head_batchnorm : bool, default=False
        Standardize the pooled features with a trained ``BatchNormalization`` layer before the
        head. Features whose means dwarf their spread, such as a backbone's lower blocks'
        (:func:`skfer.backbones.lower_blocks`), otherwise train a head poorly: on FER+, blocks
        1 to 9 of the face MobileNet grid-pooled scored 0.59 on the stopping part without it
        and 0.83 with it (docs/results.md).
    short_epochs : int, default=5
        Epochs of the short retraining (frozen backbone).
    short_learning_rate : float, default=1e-3
        Learning rate of the short retraining.
    long_epochs : int, default=20
        Epochs of the long retraining; 0 runs the short phase alone.
    long_learning_rate : float, default=1e-4
        Learning rate of the long retraining.
    unfreeze_blocks : int or None, default=None
        Blocks of the backbone trained in the long phase, counted from the top; None: all.
        With ``cache_features`` and without ``augmentation``, N blocks (fewer than all) train
        on the cached float16 maps of the frozen blocks below, computed once per backbone
        weights and images (BatchNorm stays in inference mode unless
        ``batchnorm_training``), and the short phase's pooled features are computed from the
        same maps through the still frozen top blocks, so the blocks below run once for both
        phases (with ``long_epochs=0``, N only says where the cache cuts the backbone);
        ``model_`` stays the whole network.
    batchnorm_training : bool, default=False
        Let BatchNorm layers update their statistics in the long phase. The default keeps the
        pretrained statistics, which fine-tuning on small gray faces otherwise destroys.
    augmentation : bool, default=False
        Random mirror, shift, rotation and zoom of training images.
    flip_augmentation : bool, default=False
        Random mirror images alone: each epoch, every training image is replaced by its
        horizontal mirror image with probability 1/2 (drawn from ``random_state``). Unlike
        ``augmentation`` it keeps the feature caches: the mirror images' features (or block
        maps) are one more cached entry, and each row of a batch is read from one or the
        other, so a cached fit still equals the uncached one. Costs one more pass of the
        frozen part over the training images. ``augmentation=True`` already mirrors: set one.
    label_smoothing : float, default=0.0
        In [0, 1): both phases minimise the categorical cross-entropy against
        ``(1 - label_smoothing) * target + label_smoothing / n_classes``, the target being
        the one-hot label (or the row of ``target_distribution``, or its mixup); the
        validation loss too.
    mixup_alpha : float, default=0.0
        Mixup (Zhang et al. 2018) of the training batches of both phases: each batch becomes
        ``lam * batch + (1 - lam) * shuffled batch``, images and target rows alike, with one
        ``lam ~ Beta(mixup_alpha, mixup_alpha)`` per batch, drawn from ``random_state``
        (:func:`skfer.training.mixup`). 0 turns it off. Mixed images are new every epoch, so
        mixup turns both feature caches off, as ``augmentation`` does; with ``class_weight``
        a mixed row weighs as its larger part's class.
    feature_mixup_alpha : float, default=0.0
        Mixup of what the trained layers read from the feature cache instead of the images
        (manifold mixup, Verma et al. 2019): the pooled features in the short phase, the
        maps below the ``unfreeze_blocks`` trained blocks in the long phase, mixed with their
        target rows as ``mixup_alpha`` mixes images. The caches stay on, so it costs no
        backbone pass. It needs every phase to train on cached inputs: a ValueError with
        ``cache_features=False``, ``augmentation=True``, ``mixup_alpha > 0``, or a long phase
        that trains every block. 0 turns it off.
    cache_features : bool, default=True
        Without augmentation, compute the frozen backbone's features once and train the head
        on them in the short phase (the result is the same; see :mod:`skfer.cache`), and with
        ``unfreeze_blocks`` train the long phase's blocks on cached maps of the blocks below
        them (the same to float16 rounding). The features are shared across fits on the same
        backbone weights and images. On cached features without ``distribution``,
        batch-level callbacks of the short phase fire once per 32 steps
        (:data:`skfer.training.CACHED_STEPS_PER_EXECUTION`). ``augmentation=True`` and
        ``mixup_alpha > 0`` turn both caches off: their images differ every epoch.
    cache_predictions : bool, default=False
        :meth:`predict_proba` (and so :meth:`predict`, :meth:`score` and a stack of which
        this model is a member) reads and fills the feature cache, as
        :meth:`predict_proba_cached` does: predicting the same images again then runs only
        the head (or the trained blocks), as choosing, fitting and scoring a stacked
        ensemble does. Off, every prediction runs the whole network and keeps nothing.
    precision : {'float32', 'mixed_float16', 'mixed_bfloat16'}, default='float32'
        Keras dtype policy; mixed precision speeds up GPUs with tensor cores (the output and
        loss stay float32, and Keras scales the loss for float16).
    jit_compile : {'auto', True, False}, default='auto'
        Compile the training step with XLA. 'auto' compiles where that is fastest: always on
        Keras' JAX backend (uncompiled JAX steps run op by op), on TensorFlow only on a GPU
        (XLA was slower for small nets on the CPU); see :func:`skfer.backend.resolve_jit_compile`.
    distribution : {None, 'data_parallel', 'mirrored'}, default=None
        Train on several devices at once, each batch split between them (:mod:`skfer.distribute`).
        'data_parallel': every GPU (else every CPU device) the backend's way, a
        ``keras.distribution.DataParallel`` on JAX (``batch_size`` must then be a multiple of
        the device count, and the validation data is cut to one) and 'mirrored' on
        TensorFlow; with one device the same as None. 'mirrored':
        ``tf.distribute.MirroredStrategy``, TensorFlow only.
    optimizer : {'adam', 'adamw', 'sgd', 'rmsprop'}, default='adam'
        Optimizer of both phases (SGD with momentum 0.9).
    long_schedule : {'constant', 'cosine'}, default='constant'
        Learning rate of the long retraining: constant, or one epoch of linear warm-up from a
        tenth of ``long_learning_rate`` (the curve dips at the phase switch) followed by a
        cosine decay to 0 over the phase's remaining steps.
    average_last_epochs : int or None, default=None
        The long retraining ends on the mean of the weights at the end of its last
        ``average_last_epochs`` epochs (stochastic weight averaging, Izmailov et al. 2018)
        where that mean scores at least as well on the validation data as the phase's best
        epoch (without early stopping: always); ``weight_average_`` says which. At least 2
        and at most ``long_epochs``; not with ``batchnorm_training=True`` or
        ``head_batchnorm=True``, whose trained BatchNorm statistics belong to each epoch's
        weights, not to their mean. None: off.
    test_time_flip : bool, default=False
        Average the probabilities of each image and its horizontal mirror image in
        :meth:`predict_proba` (and so in :meth:`predict` and :meth:`score`).
    test_time_crops : {1, 5}, default=1
        1: predict on the whole image. 5: average the probabilities of its four corner crops
        and its centre crop (with ``test_time_flip``, of those and their 5 mirror images: 10
        views), each of sides ``test_time_crop_fraction`` of the image's and resized to
        ``input_size`` in the graph as whole images are.
    test_time_crop_fraction : float, default=0.9
        In (0, 1): side of the test-time crops as a share of the image's side (rounded to
        whole pixels: 43 of FER2013's 48).
    batch_size : int, default=64
        Images per gradient step and per prediction batch.
    feature_batch_size : int or None, default=None
        Images per batch of the frozen part's forward pass whose outputs the feature cache
        stores (the maps or pooled features that cached phases train on); None: ``batch_size``.
        The stored values are the same; only the speed differs: on 2 CPU cores the
        face-trained MobileNet 1.0 computes its 224 px maps 1.05-1.18x faster in batches of 32
        than of 64 (``benchmarks/bench_feature_batch.py``).
    class_weight : None, 'balanced' or dict, default=None
        Weights of the classes in the loss; 'balanced' uses ``n / (k * count)``.
    validation_fraction : float or None, default=0.1
        Share of the training data held out (stratified) for early stopping when
        ``fit`` gets no ``validation_data``; None holds out nothing.
    patience : int or None, default=5
        Epochs without a better validation score (``stopping_metric``) before a phase stops;
        the best weights are restored, and if no long-phase epoch beats the short phase's best,
        the short phase's weights are kept. None disables early stopping (the last weights are
        kept).
    stopping_metric : {'accuracy', 'balanced_accuracy'}, default='accuracy'
        The validation score that early stopping and the choice between phases follow.
        'balanced_accuracy' (the mean recall over classes) suits imbalanced problems, where
        plain accuracy favours the epoch nearest to always predicting the largest class;
        :class:`~skfer.OneVsAllExperts` sets it for each expert (:mod:`skfer.stopping`).
    checkpoint_dir : path or None, default=None
        Save the training state after every epoch (model, optimiser, epoch, phase, history)
        so that a crashed ``fit`` resumes when called again with the same data and
        parameters. A finished ``fit`` deletes the directory's checkpoint. Early stopping's
        memory of the best epoch is not kept across a crash.
    random_state : int, RandomState or None, default=None
        Seeds the head's initialisation, the validation split, the shuffling, the
        augmentation and mixup. Identical seeds give identical models on a CPU.
    verbose : int, default=1
        0 silent; 1 a line per phase and per epoch; 2 Keras' progress bar per batch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted; the columns of :meth:`predict_proba`.
    n_features_in_ : int
        Pixels per image (H * W * C) seen in ``fit``.
    image_shape_ : tuple of int
        ``(H, W, C)`` of the training images.
    model_ : keras.Model
        The trained network.
    history_ : dict of str to list
        Per epoch across both phases: ``loss``, ``accuracy`` and, with validation data,
        ``val_loss``, ``val_accuracy``; ``phase`` names the phase of each epoch.
    long_phase_start_ : int
        Index of the first epoch of the long phase in ``history_`` (the number of short-phase
        epochs that ran).
    weight_average_ : dict or None
        With ``average_last_epochs``: the ``epochs`` averaged (counted from 1 across both
        phases), the mean's validation ``score``, the best epoch's (``best_epoch_score``)
        and whether the long retraining ended on the mean (``kept``). None otherwise, or if
        fewer than 2 long epochs ran.
    """

    _parameter_constraints: dict = {
        "backbone": [InstanceOf(str, "a backbone name (skfer.list_backbones())")],
        "weights": [None, InstanceOf((str, os.PathLike), "a weight source name or a path")],
        "input_size": [None, Interval(int, 1, None)],
        "head": [SequenceOf(Interval(int, 1, None))],
        "dropout": [Interval(float, 0, 1, closed="left")],
        "pooling": [Options(POOLING_CHOICES)],
        "head_batchnorm": [InstanceOf((bool, np.bool_), "a bool")],
        "short_epochs": [Interval(int, 0, None)],
        "short_learning_rate": [Interval(float, 0, None, closed="neither")],
        "long_epochs": [Interval(int, 0, None)],
        "long_learning_rate": [Interval(float, 0, None, closed="neither")],
        "unfreeze_blocks": [None, Interval(int, 0, None)],
        "batchnorm_training": [InstanceOf((bool, np.bool_), "a bool")],
        "augmentation": [InstanceOf((bool, np.bool_), "a bool")],
        "flip_augmentation": [InstanceOf((bool, np.bool_), "a bool")],
        "label_smoothing": [Interval(float, 0, 1, closed="left")],
        "mixup_alpha": [Interval(float, 0, None)],
        "feature_mixup_alpha": [Interval(float, 0, None)],
        "cache_features": [InstanceOf((bool, np.bool_), "a bool")],
        "cache_predictions": [InstanceOf((bool, np.bool_), "a bool")],
        "precision": [Options(PRECISIONS)],
        "jit_compile": [Options(("auto",)), InstanceOf((bool, np.bool_), "a bool")],
        "distribution": [Options(DISTRIBUTIONS)],
        "optimizer": [Options(tuple(OPTIMIZERS))],
        "long_schedule": [Options(SCHEDULES)],
        "average_last_epochs": [None, Interval(int, 2, None)],
        "test_time_flip": [InstanceOf((bool, np.bool_), "a bool")],
        "test_time_crops": [Options(TEST_TIME_CROPS)],
        "test_time_crop_fraction": [Interval(float, 0, 1, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "feature_batch_size": [None, Interval(int, 1, None)],
        "class_weight": [None, Options(("balanced",)), InstanceOf(dict, "a dict {label: weight}")],
        "validation_fraction": [None, Interval(float, 0, 1, closed="neither")],
        "patience": [None, Interval(int, 0, None)],
        "stopping_metric": [Options(STOPPING_METRICS)],
        "checkpoint_dir": [None, InstanceOf((str, os.PathLike), "a directory path")],
        "random_state": [
            None,
            Interval(int, 0, 2**32 - 1),
            InstanceOf(np.random.RandomState, "a numpy RandomState"),
        ],
        "verbose": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        backbone: str = "vggface",
        *,
        weights="default",
        input_size: int | None = None,
        head: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
        pooling: str = "avg",
        head_batchnorm: bool = False,
        short_epochs: int = 5,
        short_learning_rate: float = 1e-3,
        long_epochs: int = 20,
        long_learning_rate: float = 1e-4,
        unfreeze_blocks: int | None = None,
        batchnorm_training: bool = False,
        augmentation: bool = False,
        flip_augmentation: bool = False,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        feature_mixup_alpha: float = 0.0,
        cache_features: bool = True,
        cache_predictions: bool = False,
        precision: str = "float32",
        jit_compile: bool | str = "auto",
        distribution: str | None = None,
        optimizer: str = "adam",
        long_schedule: str = "constant",
        average_last_epochs: int | None = None,
        test_time_flip: bool = False,
        test_time_crops: int = 1,
        test_time_crop_fraction: float = 0.9,
        batch_size: int = 64,
        feature_batch_size: int | None = None,
        class_weight=None,
        validation_fraction: float | None = 0.1,
        patience: int | None = 5,
        stopping_metric: str = "accuracy",
        checkpoint_dir=None,
        random_state=None,
        verbose: int = 1,
    ):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.head = head
        self.dropout = dropout
        self.pooling = pooling
        self.head_batchnorm = head_batchnorm
        self.short_epochs = short_epochs
        self.short_learning_rate = short_learning_rate
        self.long_epochs = long_epochs
        self.long_learning_rate = long_learning_rate
        self.unfreeze_blocks = unfreeze_blocks
        self.batchnorm_training = batchnorm_training
        self.augmentation = augmentation
        self.flip_augmentation = flip_augmentation
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.feature_mixup_alpha = feature_mixup_alpha
        self.cache_features = cache_features
        self.cache_predictions = cache_predictions
        self.precision = precision
        self.jit_compile = jit_compile
        self.distribution = distribution
        self.optimizer = optimizer
        self.long_schedule = long_schedule
        self.average_last_epochs = average_last_epochs
        self.test_time_flip = test_time_flip
        self.test_time_crops = test_time_crops
        self.test_time_crop_fraction = test_time_crop_fraction
        self.batch_size = batch_size
        self.feature_batch_size = feature_batch_size
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.stopping_metric = stopping_metric
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn API

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.poor_score = True
        tags.non_deterministic = False
        # transform() gives embeddings (float32), so it is also a transformer.
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    def fit(self, X, y, *, validation_data=None, callbacks=None, target_distribution=None):
        """Train the network in two phases.

        Parameters
        ----------
        X : array-like
            Training images, ``(n, H*W)``, ``(n, H, W)``, ``(n, H, W, 1)`` or ``(n, H, W, 3)``,
            pixel intensities in 0..255.
        y : array-like of shape (n,)
            Class labels of any type.
        validation_data : tuple (X_val, y_val), optional
            Held-out data for early stopping and the validation curves; replaces
            ``validation_fraction``.
        callbacks : list of keras.callbacks.Callback, optional
            Extra Keras callbacks for both phases (TensorBoard, say).
        target_distribution : array-like of shape (n, n_classes), optional
            Soft targets (e.g. FER+ vote shares): train with categorical cross-entropy against
            these rows, columns in ``classes_`` order, each non-negative and summing to 1.
            ``y`` still gives ``classes_``; validation accuracy stays on hard labels. See
            :mod:`skfer.soft_targets`.

        Returns
        -------
        self : TransferCNNClassifier

        Notes
        -----
        Ctrl-C (``KeyboardInterrupt``) during training stops it with a warning and leaves a
        usable estimator with the best weights seen so far, as ``MLPClassifier`` does. With
        ``checkpoint_dir``, calling ``fit`` again with the same data and parameters resumes.
        """
        spec = self._check_params()
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if y.size == 0:
            raise ValueError(
                "y holds 0 sample(s) while a minimum of 1 is required; pass training images "
                f"and one label per image. Received: y with shape {y.shape}"
            )
        classes, targets = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes to learn; y holds only one "
                f"class. Received: classes={classes.tolist()}"
            )
        images = as_image_batch(X)
        check_one_label_per_image(images, y)
        self.classes_ = classes
        self.image_shape_ = images.shape[1:]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self._flat_input = np.asarray(X).ndim == 2

        class_weight = self._class_weights(targets)
        distribution = None
        if target_distribution is not None:
            distribution = check_target_distribution(target_distribution, y.size, classes)

        seed = self._draw_seed()
        checkpoint = None
        if self.checkpoint_dir is not None:
            checkpoint = TrainingCheckpoint(
                self.checkpoint_dir,
                fingerprint(
                    {k: v for k, v in self.get_params().items() if k != "verbose"},
                    images,
                    targets,
                    *([] if distribution is None else [distribution]),
                ),
            )
            seed = checkpoint.stored_seed(seed)  # a resumed fit keeps its validation split
        train_data, validation = self._split_validation(images, targets, validation_data, seed)
        if distribution is not None:  # soft targets: the same split, of row numbers
            (rows, _), _ = self._split_validation(np.arange(y.size), targets, validation_data, seed)
            train_data, validation = soft_target_data(
                train_data, distribution[rows], validation, classes.size
            )

        weights = spec.default_weights if self.weights == "default" else self.weights
        self._strategy = make_strategy(self.distribution, batch_size=self.batch_size)
        validation = even_rows(validation, self._strategy)
        with strategy_scope(self._strategy):
            self.model_ = build_transfer_model(
                spec,
                channels=self.image_shape_[-1],
                n_classes=len(self.classes_),
                input_size=self.input_size or spec.default_input_size,
                weights=weights,
                head=tuple(self.head),
                dropout=self.dropout,
                pooling=self.pooling,
                head_batchnorm=bool(self.head_batchnorm),
                augmentation=self.augmentation,
                batchnorm_training=self.batchnorm_training,
                seed=seed % 100_000,
                precision=self.precision,
            )
        phases = (
            Phase(
                "short",
                self.short_epochs,
                self.short_learning_rate,
                trainable_blocks=0,
                via_blocks=self.unfreeze_blocks,
            ),
            Phase(
                "long",
                self.long_epochs,
                self.long_learning_rate,
                self.unfreeze_blocks,
                schedule=self.long_schedule,
                average_epochs=self.average_last_epochs,
            ),
        )
        settings = TrainingSettings(
            optimizer=self.optimizer,
            batch_size=self.batch_size,
            feature_batch_size=self.feature_batch_size,
            class_weight=class_weight,
            patience=self.patience,
            stopping_metric=self.stopping_metric,
            cache_features=self.cache_features,
            jit_compile=resolve_jit_compile(self.jit_compile),
            label_smoothing=float(self.label_smoothing),
            mixup_alpha=float(self.mixup_alpha),
            feature_mixup_alpha=float(self.feature_mixup_alpha),
            flip_augmentation=bool(self.flip_augmentation),
            verbose=self.verbose,
        )
        result = train(
            self.model_,
            spec,
            phases,
            train_data,
            validation,
            settings=settings,
            seed=seed,
            strategy=self._strategy,
            callbacks=list(callbacks or []),
            checkpoint=checkpoint,
        )
        self.history_ = result.history
        self.long_phase_start_ = self.history_["phase"].count("short")
        self.weight_average_ = next(
            (average.as_dict() for average in result.weight_averages if average.phase == "long"),
            None,
        )
        if result.interrupted_phase is not None:
            warnings.warn(
                f"Training was interrupted by the user in the {result.interrupted_phase} phase "
                f"after {len(self.history_['phase'])} epoch(s). The estimator is usable: it "
                f"keeps the best weights seen on the validation data (else the last ones).",
                UserWarning,
                stacklevel=2,
            )
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``.

        Parameters
        ----------
        X : array-like
            Images in the layouts accepted by :meth:`fit`.

        Returns
        -------
        ndarray of shape (n, n_classes)
        """
        return self._predict_proba(X, cached=self.cache_predictions)

    def predict_proba_cached(self, X) -> np.ndarray:
        """:meth:`predict_proba` with the backbone's pooled features from the feature cache.

        Models whose feature part is identical (same backbone, input size, pooling, precision
        and weight values), such as the one-vs-all experts on one fine-tuned backbone, then
        compute the features of the same images once, and predicting the same images again
        runs only the head. After a long phase that trained only the top ``unfreeze_blocks``
        blocks, the cache holds the maps of the frozen blocks below instead (shared by every
        model fine-tuned from the same weights), and those blocks and the head run on them;
        without a long phase, the pooled features come from those maps as in training.
        With ``test_time_flip`` the mirror images are one more cached entry, and with
        ``test_time_crops`` each crop (and its mirror) is one. The probabilities
        are those of :meth:`predict_proba` (to the float16 rounding of block maps); a first
        prediction costs a little more (the cache key hashes the weights and images).

        Parameters
        ----------
        X : array-like
            Images in the layouts accepted by :meth:`fit`.

        Returns
        -------
        ndarray of shape (n, n_classes)
        """
        return self._predict_proba(X, cached=True)

    def _predict_proba(self, X, *, cached: bool) -> np.ndarray:
        images = self._check_predict_input(X)
        views = self._test_time_views(images)
        proba = sum(self._probabilities(view, cached) for view in views) / len(views)
        return proba.astype(np.float64)

    def _test_time_views(self, images: np.ndarray) -> list[np.ndarray]:
        """The views of ``images`` whose probabilities :meth:`predict_proba` averages: the
        images or their five crops, each followed by its mirror image with ``test_time_flip``.
        The prediction parameters are checked here too: ``set_params`` may change them after
        ``fit``."""
        self._check_test_time_params()
        views = [images]
        if self.test_time_crops == 5:
            views = _five_crops(images, self.test_time_crop_fraction)
        if self.test_time_flip:
            views = [image for view in views for image in (view, view[:, :, ::-1])]
        return views

    def _probabilities(self, images: np.ndarray, cached: bool) -> np.ndarray:
        if not cached:
            return predict_in_full_batches(self.model_, images, self.batch_size)
        spec = get_backbone(self.backbone)
        blocks = self.unfreeze_blocks if self.long_epochs else 0
        if block_boundary(spec.block_ends, blocks) is None:
            blocks = 0  # the long phase trained all of the backbone or none: pooled features
        # Pooled features as the short phase computed them: from the maps below the
        # unfrozen blocks, if any, whose values the long phase did not change.
        via_blocks = self.unfreeze_blocks if blocks == 0 and not self.long_epochs else None
        split = _feature_split(self.model_, spec, blocks, via_blocks)
        features = split.features(
            images, cache=feature_cache, batch_size=self._feature_batch_size()
        )
        return predict_in_chunks(split.trained, features, self.batch_size)

    def _feature_batch_size(self) -> int:
        return self.batch_size if self.feature_batch_size is None else self.feature_batch_size

    def predict(self, X) -> np.ndarray:
        """Most probable class of each image.

        Parameters
        ----------
        X : array-like
            Images in the layouts accepted by :meth:`fit`.

        Returns
        -------
        ndarray of shape (n,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def transform(self, X) -> np.ndarray:
        """Embeddings: the output of the head's last hidden layer (the pooled backbone
        features if the head has none), so the network can feed another estimator.

        Parameters
        ----------
        X : array-like
            Images in the layouts accepted by :meth:`fit`.

        Returns
        -------
        ndarray of shape (n, head[-1])
        """
        images = self._check_predict_input(X)
        penultimate = self.model_.layers[
            self.model_.layers.index(self.model_.get_layer("predictions")) - 1
        ]
        embedder = keras.Model(self.model_.input, penultimate.output)
        return predict_in_full_batches(embedder, images, self.batch_size)

    def save(self, path) -> Path:
        """Write the fitted classifier to one ``.skfer`` file; read it with :func:`skfer.load`.

        No pickle: the Keras model in its ``.keras`` format (loaded with ``safe_mode=True``)
        and the parameters, classes and history as JSON.
        """
        return write_classifier(self, path)

    # ------------------------------------------------------------------ training steps

    def _check_params(self) -> BackboneSpec:
        """Check every parameter before any work; return the backbone's spec."""
        check_params(self.get_params(deep=False), self._parameter_constraints)
        spec = get_backbone(self.backbone)
        if self.input_size is not None and self.input_size < spec.min_input_size:
            raise ValueError(
                f"Backbone {spec.name!r} needs inputs of at least {spec.min_input_size} pixels; "
                f"pass a larger input_size. Received: input_size={self.input_size}"
            )
        if self.short_epochs + self.long_epochs == 0:
            raise ValueError(
                "short_epochs and long_epochs are both 0: nothing would be trained. "
                "Received: short_epochs=0, long_epochs=0"
            )
        if self.augmentation and self.flip_augmentation:
            raise ValueError(
                "augmentation=True already mirrors the training images (with shifts, "
                "rotations and zooms); flip_augmentation=True adds nothing to it. Set one of "
                "them. Received: augmentation=True, flip_augmentation=True"
            )
        if self.feature_mixup_alpha:
            self._check_feature_mixup(spec)
        if self.average_last_epochs is not None:
            self._check_weight_averaging()
        if self.batchnorm_training and spec.folded_batchnorm and self.weights is not None:
            raise ValueError(
                f"Backbone {spec.name!r}'s weights fold BatchNorm into a fixed scale and shift "
                "(moving mean 0, variance 1 - epsilon); batchnorm_training=True would replace "
                "them with batch statistics and wreck its features. Keep "
                "batchnorm_training=False (or use weights=None). Received: batchnorm_training=True"
            )
        if isinstance(self.class_weight, dict):
            weights = list(self.class_weight.values())
            if not all(weight in Interval(float, 0, None) for weight in weights):
                raise ValueError(
                    "class_weight must map labels to numbers >= 0. "
                    f"Received: class_weight={self.class_weight!r}"
                )
        return spec

    def _check_weight_averaging(self) -> None:
        """``average_last_epochs`` averages long epochs, and only weights that are not
        BatchNorm statistics of each epoch."""
        if self.average_last_epochs > self.long_epochs:
            raise ValueError(
                "average_last_epochs averages the weights of the long retraining's last "
                "epochs: it cannot exceed long_epochs. Lower average_last_epochs, raise "
                f"long_epochs, or set average_last_epochs=None. Received: "
                f"average_last_epochs={self.average_last_epochs!r}, "
                f"long_epochs={self.long_epochs!r}"
            )
        trained_statistics = [
            f"{name}=True"
            for name in ("batchnorm_training", "head_batchnorm")
            if getattr(self, name)
        ]
        if trained_statistics:
            raise ValueError(
                "average_last_epochs would average BatchNorm statistics that each epoch's "
                "weights computed for themselves, not for the mean of the weights. Set "
                "batchnorm_training=False and head_batchnorm=False, or average_last_epochs="
                f"None. Received: average_last_epochs={self.average_last_epochs!r}, "
                + ", ".join(trained_statistics)
            )

    def _check_feature_mixup(self, spec: BackboneSpec) -> None:
        """``feature_mixup_alpha`` mixes cached inputs: every phase must train on them."""
        trains_every_block = (
            self.long_epochs > 0
            and self.unfreeze_blocks != 0
            and block_boundary(spec.block_ends, self.unfreeze_blocks) is None
        )
        blockers = {
            "cache_features=False": not self.cache_features,
            "augmentation=True": self.augmentation,
            f"mixup_alpha={self.mixup_alpha!r}": self.mixup_alpha > 0,
            f"unfreeze_blocks={self.unfreeze_blocks!r} (every block of {spec.name!r} trains "
            "in the long phase)": trains_every_block,
        }
        received = [name for name, blocks in blockers.items() if blocks]
        if received:
            raise ValueError(
                "feature_mixup_alpha mixes the cached features and block maps that the trained "
                "layers read, so every phase must train on cached inputs: keep "
                "cache_features=True, augmentation=False and mixup_alpha=0, and unfreeze fewer "
                "blocks than the backbone has (or use mixup_alpha on the images). Received: "
                f"feature_mixup_alpha={self.feature_mixup_alpha!r}, " + ", ".join(received)
            )

    def _check_test_time_params(self) -> None:
        names = (
            "test_time_flip",
            "test_time_crops",
            "test_time_crop_fraction",
            "cache_predictions",
        )
        check_params(
            self.get_params(deep=False), {name: self._parameter_constraints[name] for name in names}
        )

    def _draw_seed(self) -> int:
        """The fit's seed, from ``random_state``; None draws fresh entropy, never from the
        global generators."""
        if self.random_state is None:
            return int(np.random.default_rng().integers(np.iinfo(np.int32).max))
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _split_validation(self, images, targets, validation_data, seed):
        """The training arrays and Keras' ``validation_data`` (or None)."""
        if validation_data is not None:
            X_val, y_val = validation_data
            val_images = self._conform_images(X_val, name="validation_data[0]")
            y_val = column_or_1d(y_val)
            check_one_label_per_image(val_images, y_val, name="validation_data[0]")
            unknown = np.setdiff1d(y_val, self.classes_)
            if unknown.size:
                raise ValueError(
                    f"validation_data holds labels absent from y; use the same classes. "
                    f"Received: unknown labels {unknown[:10].tolist()}"
                )
            return (images, targets), (val_images, np.searchsorted(self.classes_, y_val))
        if self.validation_fraction is None:
            return (images, targets), None
        counts = np.bincount(targets)
        n_validation = int(np.ceil(self.validation_fraction * len(targets)))
        if counts.min() < 2 or n_validation < len(self.classes_):
            rarest = self.classes_[np.argmin(counts)]
            raise ValueError(
                f"Too few samples for a stratified validation split of "
                f"validation_fraction={self.validation_fraction}: class {rarest!r} has "
                f"{counts.min()} sample(s) and the split needs at least one per class in each "
                f"part. Pass more data, validation_data=(X_val, y_val), or "
                f"validation_fraction=None. Received: {len(targets)} samples, "
                f"{len(self.classes_)} classes"
            )
        X_train, X_val, y_train, y_val = train_test_split(
            images, targets, test_size=n_validation, stratify=targets, random_state=seed
        )
        return (X_train, y_train), (X_val, y_val)

    def _class_weights(self, targets):
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            weights = compute_class_weight(
                "balanced", classes=np.arange(len(self.classes_)), y=targets
            )
            return dict(enumerate(weights.tolist()))
        missing = [c for c in self.class_weight if c not in set(self.classes_.tolist())]
        if missing:
            raise ValueError(
                f"class_weight names labels that are not in y. Received: {missing[:10]}"
            )
        return {
            int(np.searchsorted(self.classes_, label)): float(weight)
            for label, weight in self.class_weight.items()
        }

    def _check_predict_input(self, X, name: str = "X") -> np.ndarray:
        check_is_fitted(self, "model_")
        images = self._conform_images(X, name)
        warn_unlike_training(images, self.image_shape_, name=name)
        return images

    def _conform_images(self, X, name: str) -> np.ndarray:
        """``X`` as an image batch that fits the training images' layout, or an error."""
        images = as_image_batch(X, name=name)
        if self._flat_input and np.asarray(X).ndim == 2:
            if images.shape[1:] != self.image_shape_:
                n_features = int(np.prod(images.shape[1:]))
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input (flat rows of "
                    f"{self.image_shape_[0]}x{self.image_shape_[1]} images)."
                )
        if images.shape[-1] != self.image_shape_[-1]:
            raise ValueError(
                f"{name} has {images.shape[-1]}-channel images but the model was fitted on "
                f"{self.image_shape_[-1]}-channel images; convert them (gray: mean over "
                f"channels; RGB: np.repeat(X, 3, axis=-1)). Received: shape={images.shape}"
            )
        return images

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        state.pop("_strategy", None)  # a strategy or distribution is process-local
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "model.keras")
                model.save(path)
                with open(path, "rb") as handle:
                    state["_model_keras_bytes"] = handle.read()
        return state

    def __setstate__(self, state):
        payload = state.pop("_model_keras_bytes", None)
        super().__setstate__(state)
        if payload is not None:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "model.keras")
                with open(path, "wb") as handle:
                    handle.write(payload)
                self.model_ = keras.models.load_model(path, safe_mode=True)
