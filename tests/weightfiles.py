"""Write small weight files in the published Keras 2 HDF5 layout (as keras-vggface and Keras
Applications ship them), so tests exercise the real loading code without downloading anything."""

from __future__ import annotations

import json

import h5py
import numpy as np


def write_keras2_weights(model, path, *, seed=0, drop_layers=(), reshape_layer=None):
    """Save random weights for every weighted layer of ``model`` in the ``save_weights`` layout.

    ``drop_layers`` leaves layers out; ``reshape_layer`` stores that layer's first weight with
    one extra unit along its last axis (a wrong shape). Returns the arrays written, by layer.
    """
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as handle:
        names = [layer.name for layer in model.layers if layer.name not in drop_layers]
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.1.5"
        for layer in model.layers:
            if layer.name in drop_layers:
                continue
            group = handle.create_group(layer.name)
            weight_names, arrays = [], []
            for index, weight in enumerate(layer.weights):
                shape = tuple(weight.shape)
                if layer.name == reshape_layer and index == 0:
                    shape = shape[:-1] + (shape[-1] + 1,)
                name = f"{layer.name}/{weight.name.split('/')[-1]}:0"
                array = rng.normal(0, 0.05, size=shape).astype(np.float32)
                group.create_dataset(name, data=array)
                weight_names.append(name.encode())
                arrays.append(array)
            group.attrs["weight_names"] = np.array(weight_names)
            if arrays:
                written[layer.name] = arrays
    return written


def write_folded_tfjs_model(model, directory, *, seed=0, drop_tensors=()):
    """Save random weights of ``model`` as a TensorFlow.js graph model with folded BatchNorm,
    named as the published VGGFace2 MobileNet's tensors (float16-quantised, one shard).

    Returns the path of the JSON file and, by layer, the float32 values the loader must give.
    """
    import keras

    rng = np.random.default_rng(seed)
    entries, chunks, expected = [], [], {}

    def add(name, array):
        if name in drop_tensors:
            return
        entries.append(
            {"name": name, "shape": list(array.shape), "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}}
        )  # fmt: skip
        chunks.append(array.astype(np.float16).tobytes())

    def value(shape):
        return rng.normal(0, 0.5, size=shape).astype(np.float16).astype(np.float32)

    add("head/kernel", value((4, 2)))  # a graph's own head: ignored by the loader
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta = value(layer.gamma.shape), value(layer.beta.shape)
            add(f"{layer.name}/batchnorm_1/mul", gamma)
            add(f"{layer.name}/batchnorm_1/sub", beta)
            variance = np.full_like(beta, 1 - layer.epsilon)
            expected[layer.name] = [gamma, beta, np.zeros_like(beta), variance]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = value(layer.weights[0].shape)
            add(f"{layer.name}/depthwise_kernel", kernel)
            expected[layer.name] = [kernel]
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = value(layer.weights[0].shape)
            add(f"{layer.name}/convolution/merged_input", kernel)
            expected[layer.name] = [kernel]
    entries.append({"name": "relu/Const", "shape": [], "dtype": "int32"})
    chunks.append(np.int32(6).tobytes())
    (directory / "model.bin").write_bytes(b"".join(chunks))
    document = {"format": "graph-model",
                "weightsManifest": [{"paths": ["model.bin"], "weights": entries}]}  # fmt: skip
    path = directory / "model.json"
    path.write_text(json.dumps(document))
    return path, expected
