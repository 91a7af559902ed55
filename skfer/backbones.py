"""Registry of pretrained backbones: builder, preprocessing, input sizes and weight sources.

Each backbone is a frozen :class:`BackboneSpec`, in the way timm and torchvision keep a model's
weights URL, hash and preprocessing together. ``get_backbone(name).build(size, weights)``
returns a headless ``keras.Model`` mapping ``(size, size, 3)`` preprocessed images to features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import h5py
import keras
import numpy as np

__all__ = [
    "BackboneSpec",
    "Preprocessing",
    "WeightSource",
    "WeightsDownloadError",
    "WeightsFileError",
    "get_backbone",
    "list_backbones",
    "load_weights_by_layer_name",
    "save_weights_by_layer_name",
]


class WeightsDownloadError(OSError):
    """A weight file could not be downloaded (no internet, URL gone)."""


class WeightsFileError(ValueError):
    """A weight file is missing, not HDF5, corrupt, or does not fit the backbone."""


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
class WeightSource:
    """Where a backbone's pretrained weights come from and how to check them.

    Parameters
    ----------
    url : str
        Download address (``file://`` works too).
    file_name : str
        Name of the file in the Keras cache (``~/.keras/models``).
    file_hash : str or None
        sha256 (64 hex digits) or md5 (32) of the file, checked after download and on load.
    min_size : int or None
        Smallest plausible file size in bytes; used where no hash is published.
    description : str
        What the weights were trained on.
    """

    url: str
    file_name: str
    file_hash: str | None
    min_size: int | None = None
    description: str = ""


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
            load_weights_by_layer_name(model, path, source=self._source_for(path))
        return model

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
                f"a path to an existing HDF5 weight file, or None (random initialisation). "
                f"Received: weights={weights!r}"
            )
        return path

    def _source_for(self, path: Path) -> WeightSource | None:
        """The registered source whose file name matches ``path``, to check its hash."""
        for source in self.weights.values():
            if source.file_name == path.name:
                return source
        return None


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_weight_file(path: Path, source: WeightSource | None) -> None:
    """Raise :class:`WeightsFileError` if ``path`` is not HDF5 or fails ``source``'s checks."""
    if not h5py.is_hdf5(path):
        raise WeightsFileError(
            f"The weight file {str(path)!r} is not an HDF5 file (truncated download or wrong "
            f"file); pass a Keras .h5 weight file. Received: {path.stat().st_size} bytes"
        )
    if source is None:
        return
    if source.file_hash is not None:
        algorithm = "sha256" if len(source.file_hash) == 64 else "md5"
        actual = file_digest(path, algorithm)
        if actual != source.file_hash:
            raise WeightsFileError(
                f"The weight file {str(path)!r} has the name of {source.url} but its {algorithm} "
                f"differs from the published {source.file_hash}: it is corrupt or a different "
                f"file. Delete it and download it again. Received: {algorithm}={actual}"
            )
    if source.min_size is not None and path.stat().st_size < source.min_size:
        raise WeightsFileError(
            f"The weight file {str(path)!r} is smaller than the {source.min_size} bytes its "
            f"weights need: it is truncated. Download it again. "
            f"Received: {path.stat().st_size} bytes"
        )


def fetch_weights(source: WeightSource, *, cache_dir=None) -> Path:
    """Download ``source`` once into the Keras cache, check its hash, and return its path."""
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)  # Keras falls back to /tmp for a missing dir
    try:
        path = keras.utils.get_file(
            source.file_name,
            source.url,
            file_hash=source.file_hash,
            cache_subdir="models",
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        )
    except ValueError as error:
        raise WeightsFileError(f"{error} Delete the cached file and retry.") from error
    except Exception as error:
        raise WeightsDownloadError(
            f"Could not download weights from {source.url} ({error}). Without internet access, "
            f"fetch {source.file_name} elsewhere and pass its local path as weights=PATH. "
            f"Received: url={source.url}"
        ) from error
    path = Path(path)
    check_weight_file(path, source)
    return path


def _weight_groups(handle: h5py.File) -> h5py.Group:
    """The group holding per-layer weights in a Keras 2 ``save_weights`` or ``save`` file."""
    root = handle["model_weights"] if "model_weights" in handle else handle
    if "layer_names" not in root.attrs:
        raise WeightsFileError(
            f"{handle.filename!r} is HDF5 but not a Keras weight file (no 'layer_names' "
            f"attribute); pass a file written by Keras' save_weights or save. "
            f"Received: top-level keys {sorted(handle.keys())[:10]}"
        )
    return root


def _decode(name) -> str:
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def load_weights_by_layer_name(
    model: keras.Model, path: str | os.PathLike, *, source: WeightSource | None = None
) -> None:
    """Fill every weighted layer of ``model`` from the layer of the same name in ``path``.

    Unlike ``load_weights(by_name=True)``, a layer missing from the file or a weight of the
    wrong shape is an error, never silently skipped. Extra layers in the file (a detector's
    heads, say) are ignored.

    Raises
    ------
    WeightsFileError
        If the file is not a Keras HDF5 weight file, fails its source's hash or size check,
        lacks a layer of ``model``, or holds a weight of another shape.
    """
    path = Path(path)
    check_weight_file(path, source)
    with h5py.File(path, "r") as handle:
        root = _weight_groups(handle)
        stored = {_decode(name) for name in root.attrs["layer_names"]}
        values: dict[str, list[np.ndarray]] = {}
        problems: list[str] = []
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in stored:
                problems.append(f"layer {layer.name!r} missing")
                continue
            group = root[layer.name]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            arrays = [np.asarray(group[name]) for name in names]
            expected = [tuple(w.shape) for w in layer.weights]
            actual = [a.shape for a in arrays]
            if expected != actual:
                problems.append(f"layer {layer.name!r} has shapes {actual}, expected {expected}")
                continue
            values[layer.name] = arrays
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise WeightsFileError(
            f"The weight file {str(path)!r} does not fit backbone {model.name!r}: pass weights "
            f"saved from the same architecture. Received: {shown}"
        )
    for layer in model.layers:
        if layer.name in values:
            layer.set_weights(values[layer.name])


def save_weights_by_layer_name(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights in the Keras 2 ``save_weights`` HDF5 layout, by layer name.

    This is the layout of the published backbone files, so the result is accepted anywhere a
    backbone takes ``weights=PATH`` (for example a fine-tuned backbone reused by experts).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weighted = [layer for layer in model.layers if layer.weights]
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([layer.name.encode() for layer in weighted])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = keras.__version__.encode()
        for layer in weighted:
            group = handle.create_group(layer.name)
            names = [f"{layer.name}/{w.name.split('/')[-1]}:0" for w in layer.weights]
            for name, value in zip(names, layer.get_weights(), strict=True):
                group.create_dataset(name, data=value)
            group.attrs["weight_names"] = np.array([name.encode() for name in names])
    return path


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
