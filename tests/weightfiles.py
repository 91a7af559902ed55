"""Write small weight files in the published Keras 2 HDF5 layout (as keras-vggface and Keras
Applications ship them), so tests exercise the real loading code without downloading anything."""

from __future__ import annotations

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
