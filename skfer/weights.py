"""Weight files: download (hash-checked, with a clear offline error), check, load and save.

Two formats hold backbone weights:

- Keras HDF5 (``save_weights`` / ``save`` layout), loaded by layer name;
- TensorFlow.js graph models (a ``model.json`` whose ``weightsManifest`` lists the tensors
  stored in binary shards beside it), with BatchNorm folded into the convolutions, loaded by
  the Keras layer names that the tensor names start with (see :func:`load_tfjs_weights`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from .errors import WeightsError

__all__ = [
    "WeightSource",
    "WeightsDownloadError",
    "WeightsFileError",
    "fetch_weights",
    "load_tfjs_weights",
    "load_weight_file",
    "load_weights_by_layer_name",
    "read_tfjs_tensors",
    "save_weights_by_layer_name",
]


class WeightsDownloadError(WeightsError, OSError):
    """A weight file could not be downloaded (no internet, URL gone)."""


class WeightsFileError(WeightsError, ValueError):
    """A weight file is missing, corrupt, of another format, or does not fit the backbone."""


@dataclass(frozen=True)
class WeightSource:
    """Where a backbone's pretrained weights come from and how to check them.

    Parameters
    ----------
    url : str
        Download address (``file://`` works too).
    file_name : str
        Name of the file in the Keras cache (``~/.keras/models``). A name ending in ``.json``
        is a TensorFlow.js graph model; any other a Keras HDF5 file.
    file_hash : str or None
        sha256 (64 hex digits) or md5 (32) of the file, checked after download and on load.
    min_size : int or None
        Smallest plausible file size in bytes; used where no hash is published.
    description : str
        What the weights were trained on.
    companions : tuple of WeightSource
        Files downloaded and checked beside this one (a graph model's weight shards).
    """

    url: str
    file_name: str
    file_hash: str | None
    min_size: int | None = None
    description: str = ""
    companions: tuple[WeightSource, ...] = ()

    @property
    def is_tfjs(self) -> bool:
        """Whether the file is a TensorFlow.js graph model."""
        return self.file_name.endswith(".json")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_weight_file(path: Path, source: WeightSource | None) -> None:
    """Raise :class:`WeightsFileError` if ``path`` is not of its format or fails ``source``'s
    checks (hash, size; those of its companions beside it too)."""
    if path.suffix == ".json":
        _read_manifest(path)
    elif not h5py.is_hdf5(path):
        raise WeightsFileError(
            f"The weight file {str(path)!r} is not an HDF5 file (truncated download or wrong "
            f"file); pass a Keras .h5 weight file or a TensorFlow.js model.json. "
            f"Received: {path.stat().st_size} bytes"
        )
    if source is None:
        return
    _check_against_source(path, source)
    for companion in source.companions:
        _check_against_source(path.parent / companion.file_name, companion)


def _check_against_source(path: Path, source: WeightSource) -> None:
    if not path.exists():
        raise WeightsFileError(
            f"The weight file {str(path)!r} is missing; it belongs beside the other files of "
            f"{source.url}. Download it again. Received: no such file"
        )
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
    """Download ``source`` (and its companions) once into the Keras cache, check their hashes,
    and return the path of its main file."""
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)  # Keras falls back to /tmp for a missing dir
    for companion in source.companions:
        _download(companion, cache_dir)
    path = _download(source, cache_dir)
    check_weight_file(path, source)
    return path


def _download(source: WeightSource, cache_dir) -> Path:
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
    return Path(path)


def load_weight_file(
    model: keras.Model, path: str | os.PathLike, *, source: WeightSource | None = None
) -> None:
    """Fill ``model`` from a Keras HDF5 file or a TensorFlow.js ``model.json``, by layer name."""
    path = Path(path)
    if path.suffix == ".json":
        load_tfjs_weights(model, path, source=source)
    else:
        load_weights_by_layer_name(model, path, source=source)


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

        def arrays_of(layer):
            if layer.name not in stored:
                return "missing"
            group = root[layer.name]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            return [np.asarray(group[name]) for name in names]

        values, problems = _collect_layer_values(model, arrays_of)
    _set_layer_weights(model, path, values, problems)


def _collect_layer_values(model, arrays_of) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """``arrays_of(layer)`` (its weights, or what is wrong) for every weighted layer of
    ``model``, checked against the layer's shapes: the values by layer name, and the problems."""
    values: dict[str, list[np.ndarray]] = {}
    problems: list[str] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = arrays_of(layer)
        if isinstance(arrays, str):
            problems.append(f"layer {layer.name!r} {arrays}")
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        actual = [a.shape for a in arrays]
        if expected != actual:
            problems.append(f"layer {layer.name!r} has shapes {actual}, expected {expected}")
            continue
        values[layer.name] = arrays
    return values, problems


def _set_layer_weights(model, path, values, problems) -> None:
    """Set every layer's weights from ``values``, or raise if ``problems`` lists any."""
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


# --------------------------------------------------------------------------- TensorFlow.js

_TFJS_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint8": 1, "uint16": 2}


def _read_manifest(path: Path) -> list[dict]:
    """The ``weightsManifest`` of a TensorFlow.js graph model, or :class:`WeightsFileError`."""
    try:
        document = json.loads(path.read_text())
        manifest = document["weightsManifest"]
        for group in manifest:
            group["paths"], group["weights"]  # noqa: B018 - both keys must be there
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise WeightsFileError(
            f"{str(path)!r} is not a TensorFlow.js graph model (a JSON file with a "
            f"'weightsManifest' listing 'paths' and 'weights'); pass a model.json or a Keras "
            f".h5 weight file. Received: {type(error).__name__}: {error}"
        ) from None
    return manifest


def read_tfjs_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a TensorFlow.js graph model's weight shards, by name, dequantised.

    Parameters
    ----------
    path : path
        The model's JSON file; its shards (``weightsManifest[*].paths``) lie beside it.

    Returns
    -------
    dict of str to ndarray
        float16-quantised tensors come back as float32; int32 tensors as int32.
    """
    path = Path(path)
    tensors = {}
    for group in _read_manifest(path):
        shards = [path.parent / name for name in group["paths"]]
        missing = [str(shard) for shard in shards if not shard.exists()]
        if missing:
            raise WeightsFileError(
                f"The weight shards of {str(path)!r} must lie beside it; download them too. "
                f"Received: missing {missing}"
            )
        buffer = b"".join(shard.read_bytes() for shard in shards)
        offset = 0
        for entry in group["weights"]:
            stored = (entry.get("quantization") or {}).get("dtype", entry["dtype"])
            if stored not in _TFJS_BYTES or stored == "uint8" or stored == "uint16":
                raise WeightsFileError(
                    f"{str(path)!r} stores tensor {entry['name']!r} as {stored!r}; skfer reads "
                    f"float32, int32 and float16-quantised tensors. Received: {entry}"
                )
            count = int(np.prod(entry["shape"], dtype=np.int64))
            size = count * _TFJS_BYTES[stored]
            if offset + size > len(buffer):
                raise WeightsFileError(
                    f"The weight shards of {str(path)!r} end before tensor {entry['name']!r}: "
                    f"they are truncated. Download them again. Received: {len(buffer)} bytes"
                )
            array = np.frombuffer(buffer, dtype=stored, count=count, offset=offset)
            offset += size
            dtype = "int32" if entry["dtype"] == "int32" else "float32"
            tensors[entry["name"]] = array.astype(dtype).reshape(entry["shape"])
    return tensors


def _tfjs_layer_values(layer, tensors: dict[str, np.ndarray]) -> list[np.ndarray] | str:
    """The weights of one Keras layer from folded graph-model tensors, or what is missing."""
    name = layer.name
    if isinstance(layer, keras.layers.BatchNormalization):
        # Folded: y = x * mul - sub'; the layer applies gamma * x + beta with mean 0 and
        # variance 1 - epsilon, i.e. exactly the folded scale and shift.
        beta = tensors.get(f"{name}/batchnorm_1/sub")
        if beta is None:
            return f"lacks tensor {name}/batchnorm_1/sub"
        gamma = tensors.get(f"{name}/batchnorm_1/mul", np.ones_like(beta))
        values = ([gamma] if layer.scale else []) + ([beta] if layer.center else [])
        return values + [np.zeros_like(beta), np.full_like(beta, 1.0 - layer.epsilon)]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernels = [f"{name}/depthwise_kernel"]
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        kernels = [f"{name}/convolution/merged_input", f"{name}/kernel"]
    else:
        return f"is a {type(layer).__name__}, which skfer cannot read from a graph model"
    kernel = next((tensors[key] for key in kernels if key in tensors), None)
    if kernel is None:
        return f"lacks tensor {kernels[0]}"
    if not getattr(layer, "use_bias", False):
        return [kernel]
    bias = tensors.get(f"{name}/bias")
    return f"lacks tensor {name}/bias" if bias is None else [kernel, bias]


def load_tfjs_weights(
    model: keras.Model, path: str | os.PathLike, *, source: WeightSource | None = None
) -> None:
    """Fill ``model`` from a TensorFlow.js graph model whose BatchNorm is folded.

    The tensors are found by the Keras layer names they start with: ``NAME/convolution/
    merged_input`` or ``NAME/kernel`` (Conv2D, Dense), ``NAME/depthwise_kernel``, ``NAME/bias``,
    and for a BatchNormalization layer ``NAME/batchnorm_1/mul`` (gamma; 1 if absent) and
    ``NAME/batchnorm_1/sub`` (beta), with moving mean 0 and moving variance ``1 - epsilon``,
    so that the layer applies exactly the folded scale and shift. Tensors of other layers (a
    graph's own heads) are ignored; a layer of ``model`` without its tensors, or a tensor of
    another shape, is an error.

    Raises
    ------
    WeightsFileError
        If the file is not a graph model, its shards are missing or truncated, it fails its
        source's hash check, or it does not fit ``model``.
    """
    path = Path(path)
    check_weight_file(path, source)
    tensors = read_tfjs_tensors(path)
    values, problems = _collect_layer_values(
        model, lambda layer: _tfjs_layer_values(layer, tensors)
    )
    _set_layer_weights(model, path, values, problems)
