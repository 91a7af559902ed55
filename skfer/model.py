"""The Keras graph of a transfer-learned classifier: input adapter, backbone, pooling, head."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import keras

from .backbones import BackboneSpec
from .layers import (
    BackboneInput,
    BackbonePreprocessing,
    FaceAugmentation,
    FrozenStatisticsBackbone,
    GridAveragePooling2D,
)

__all__ = [
    "BACKBONE_LAYER",
    "POOLING_CHOICES",
    "POOLING_LAYER",
    "SPATIAL_CHANNELS",
    "block_boundary",
    "build_transfer_model",
    "is_augmented",
    "set_backbone_trainable",
    "split_at_block",
    "split_at_pooling",
]

BACKBONE_LAYER = "backbone"
POOLING_LAYER = "pool"
POOLING_CHOICES = ("avg", "max", "flatten", "grid", "spatial")
SPATIAL_CHANNELS = 128
"""Channels of the 1x1 convolution that opens the head of ``pooling='spatial'``."""
AUGMENTATION_PREFIX = "augment"  # FaceAugmentation; files saved before it: "augment_flip", ...
_PYTHON_RANDOM_LOCK = threading.Lock()  # builds in parallel threads must not interleave


def build_transfer_model(
    spec: BackboneSpec,
    *,
    channels: int,
    n_classes: int,
    input_size: int,
    weights=None,
    head: Sequence[int] = (1024, 1024),
    dropout: float = 0.5,
    pooling: str = "avg",
    head_batchnorm: bool = False,
    augmentation: bool = False,
    batchnorm_training: bool = False,
    seed: int = 0,
    precision: str = "float32",
    cache_dir=None,
) -> keras.Model:
    """Build ``images -> class probabilities`` around the backbone ``spec``.

    The model takes images of any height and width with ``channels`` channels (1 or 3) in
    0..255, in any numeric dtype; casting, gray to RGB, resizing to ``input_size`` and the
    backbone's preprocessing happen per batch inside the graph.

    Parameters
    ----------
    spec : BackboneSpec
        The backbone to build.
    channels : int
        Channels of the stored images (1 gray or 3 RGB).
    n_classes : int
        Width of the softmax output.
    input_size : int
        Side of the square backbone input in pixels.
    weights : str, path or None
        Passed to :meth:`BackboneSpec.build`.
    head : sequence of int
        Units of the hidden Dense layers of the head; each is followed by ``Dropout(dropout)``.
    dropout : float
        Dropout rate of the head.
    pooling : {'avg', 'max', 'flatten', 'grid', 'spatial'}
        How the backbone's feature map becomes a vector. ``'grid'`` averages each quarter of
        the map (:class:`~skfer.layers.GridAveragePooling2D`, 2 x 2 cells). ``'spatial'``
        keeps where each feature lies: the pooling layer passes the map on unchanged and the
        head opens with a trained 1x1 convolution to :data:`SPATIAL_CHANNELS` channels (ReLU,
        dropout ``dropout / 2``) that is then flattened.
    head_batchnorm : bool
        Standardize the pooled features (or map) with a ``BatchNormalization`` layer, the
        head's first, trained with it.
    augmentation : bool
        Add random flip, shift, rotation and zoom (:class:`~skfer.layers.FaceAugmentation`),
        active only in training.
    batchnorm_training : bool
        See :class:`~skfer.layers.FrozenStatisticsBackbone`.
    seed : int
        Seed of the initialisers (the backbone's too, without weights) and the augmentation.
        Python's global generator is seeded during the build and then given back its state.
    precision : {'float32', 'mixed_float16', 'mixed_bfloat16'}
        Keras dtype policy of the layers; the softmax output stays float32.
    """
    with _PYTHON_RANDOM_LOCK:
        previous_policy, previous_random = keras.config.dtype_policy(), random.getstate()
        keras.config.set_dtype_policy(precision)
        random.seed(seed)  # Keras seeds unseeded initialisers from Python's generator
        try:
            return _build(spec, channels, n_classes, input_size, weights, head, dropout, pooling,
                          head_batchnorm, augmentation, batchnorm_training, seed,
                          cache_dir)  # fmt: skip
        finally:
            keras.config.set_dtype_policy(previous_policy)
            random.setstate(previous_random)


def _build(spec, channels, n_classes, input_size, weights, head, dropout, pooling,
           head_batchnorm, augmentation, batchnorm_training, seed,
           cache_dir) -> keras.Model:  # fmt: skip
    backbone = spec.build(input_size, weights, cache_dir=cache_dir)
    inputs = keras.Input(shape=(None, None, channels), name="images")
    x = inputs
    if augmentation:
        x = FaceAugmentation(seed=seed, name="augment")(x)
    x = BackboneInput(input_size, name="backbone_input")(x)
    preprocessing = spec.preprocessing
    x = BackbonePreprocessing(
        bgr=preprocessing.bgr,
        scale=preprocessing.scale,
        mean=preprocessing.mean,
        std=preprocessing.std,
        name="preprocessing",
    )(x)
    x = FrozenStatisticsBackbone(backbone, batchnorm_training, name=BACKBONE_LAYER)(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=POOLING_LAYER)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=POOLING_LAYER)(x)
    elif pooling == "flatten":
        x = keras.layers.Flatten(name=POOLING_LAYER)(x)
    elif pooling == "grid":
        x = GridAveragePooling2D(2, name=POOLING_LAYER)(x)
    else:
        x = keras.layers.Identity(name=POOLING_LAYER)(x)
    if head_batchnorm:
        x = keras.layers.BatchNormalization(name="head_batchnorm")(x)
    if pooling == "spatial":
        x = keras.layers.Conv2D(
            SPATIAL_CHANNELS,
            1,
            activation="relu",
            kernel_initializer=keras.initializers.HeUniform(seed=seed + 10),
            name="head_reduce",
        )(x)
        x = keras.layers.Dropout(dropout / 2, seed=seed + 20, name="head_dropout_0")(x)
        x = keras.layers.Flatten(name="head_flatten")(x)
    for index, units in enumerate(head, start=1):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=keras.initializers.HeUniform(seed=seed + 10 + index),
            name=f"head_dense_{index}",
        )(x)
        x = keras.layers.Dropout(dropout, seed=seed + 20 + index, name=f"head_dropout_{index}")(x)
    outputs = keras.layers.Dense(
        n_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 30),
        dtype="float32",
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=f"skfer_{spec.name}")


def set_backbone_trainable(model: keras.Model, block_ends: Sequence[str], blocks: int | None):
    """Make the backbone of ``model`` trainable: all of it, or its top ``blocks`` blocks.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`build_transfer_model`.
    block_ends : sequence of str
        The backbone's block boundaries (:attr:`BackboneSpec.block_ends`).
    blocks : int or None
        None trains every backbone layer; ``0`` none; ``N`` the layers after the end of
        block ``len(block_ends) - N``.
    """
    wrapper = model.get_layer(BACKBONE_LAYER)
    wrapper.trainable = True
    layers = wrapper.backbone.layers
    if blocks is None:
        for layer in layers:
            layer.trainable = True
        return
    if blocks >= len(block_ends):
        first_trainable = 0
    else:
        names = [layer.name for layer in layers]
        first_trainable = names.index(block_ends[len(block_ends) - blocks - 1]) + 1
    for position, layer in enumerate(layers):
        layer.trainable = position >= first_trainable


def block_boundary(block_ends: Sequence[str], blocks: int | None) -> str | None:
    """The backbone layer whose output enters the lowest of the top ``blocks`` blocks.

    None unless some block stays below them: for ``blocks`` None, 0, or all the blocks.
    """
    if blocks is None or not 0 < blocks < len(block_ends):
        return None
    return block_ends[len(block_ends) - blocks - 1]


def is_augmented(model: keras.Model) -> bool:
    """Whether ``model`` has the random augmentation layers (active in training only)."""
    return any(layer.name.startswith(AUGMENTATION_PREFIX) for layer in model.layers)


def split_at_pooling(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Split ``model`` into ``images -> pooled features`` and ``pooled features -> probabilities``.

    Both parts share their layers with ``model``: training the head part trains ``model``'s
    head. Augmentation layers, if any, stay in the feature part.
    """
    pooled = model.get_layer(POOLING_LAYER).output
    feature_model = keras.Model(model.input, pooled, name=f"{model.name}_features")
    features = keras.Input(shape=pooled.shape[1:], name="features")
    x = features
    after_pooling = model.layers[model.layers.index(model.get_layer(POOLING_LAYER)) + 1 :]
    for layer in after_pooling:
        x = layer(x)
    return feature_model, keras.Model(features, x, name=f"{model.name}_head")


def split_at_block(
    model: keras.Model,
    block_ends: Sequence[str],
    blocks: int,
    *,
    maps_dtype: str = "float32",
    until: str | None = None,
) -> tuple[keras.Model, keras.Model]:
    """Split ``model`` into ``images -> block maps`` and ``block maps -> probabilities`` at the
    input of its top ``blocks`` backbone blocks (after ``block_boundary(block_ends, blocks)``).

    Both parts share their layers with ``model``: training the top part trains ``model``'s top
    blocks and head. The top part runs its blocks in a
    :class:`~skfer.layers.FrozenStatisticsBackbone` with the model's ``batchnorm_training``
    and takes maps of ``maps_dtype`` (cast to the layers' dtype in the graph). ``until``
    (a layer name, such as :data:`POOLING_LAYER`) ends the top part at that layer's output:
    ``block maps -> pooled features``.
    """
    boundary = block_boundary(block_ends, blocks)
    if boundary is None:
        raise ValueError(
            f"split_at_block needs a block below the top {blocks}: blocks must lie in 1.."
            f"{len(block_ends) - 1}. Received: blocks={blocks!r}"
        )
    wrapper = model.get_layer(BACKBONE_LAYER)
    above_wrapper = model.layers[model.layers.index(wrapper) + 1 :]
    if until is not None and until not in [layer.name for layer in above_wrapper]:
        raise ValueError(
            f"until must name a layer above the backbone, such as {POOLING_LAYER!r}. "
            f"Received: until={until!r}"
        )
    backbone = wrapper.backbone
    cut = backbone.get_layer(boundary).output
    below = keras.Model(backbone.input, cut, name=f"{backbone.name}_to_{boundary}")
    above = keras.Model(cut, backbone.output, name=f"{backbone.name}_from_{boundary}")
    map_model = keras.Model(model.input, below(wrapper.input), name=f"{model.name}_maps")
    maps = keras.Input(shape=cut.shape[1:], dtype=maps_dtype, name="block_maps")
    x = FrozenStatisticsBackbone(
        above, wrapper.batchnorm_training, dtype=wrapper.dtype_policy, name=f"{BACKBONE_LAYER}_top"
    )(maps)
    for layer in above_wrapper:
        x = layer(x)
        if layer.name == until:
            break
    return map_model, keras.Model(maps, x, name=f"{model.name}_top")
