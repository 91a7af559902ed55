"""What depends on Keras' backend: where to compile, and the TensorFlow-only features.

skfer's core is written in ``keras.ops`` and runs on Keras 3's TensorFlow backend (the default
and the install's dependency) and on its JAX backend (``KERAS_BACKEND=jax``). A few features
use TensorFlow itself; they raise :class:`BackendError` elsewhere, saying what to do instead.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = [
    "BackendError",
    "compiles_per_batch_shape",
    "predict_in_full_batches",
    "require_tensorflow",
    "resolve_jit_compile",
]


class BackendError(RuntimeError):
    """A feature needs another Keras backend than the one running."""


def resolve_jit_compile(jit_compile) -> bool | str:
    """The ``jit_compile`` value given to ``Model.compile`` for skfer's ``jit_compile``.

    ``'auto'`` compiles where compiling is fastest: always on JAX, whose uncompiled training
    steps run op by op (80x slower on an H100); on TensorFlow Keras' own ``'auto'``, which is
    XLA on a GPU and none on a CPU-only machine (XLA was slower here for small nets on the CPU).
    """
    if jit_compile != "auto":
        return bool(jit_compile)
    if keras.backend.backend() == "jax":
        return True
    return "auto"


def has_gpu() -> bool:
    """Whether Keras' backend sees a GPU (``keras.distribution.list_devices``)."""
    return any(device.startswith("gpu") for device in keras.distribution.list_devices())


def compiles_per_batch_shape() -> bool:
    """Whether Keras' backend compiles a step function again for each new batch shape.

    True on JAX: a smaller last batch there costs one more XLA compilation of the training,
    evaluation or prediction step (about a minute for a training step at 224 px on an H100).
    skfer then trains on full batches and pads the last batch of a prediction. False on
    TensorFlow, whose CPU path skfer leaves exactly as it was.
    """
    return keras.backend.backend() == "jax"


def predict_in_full_batches(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict(x)``; where :func:`compiles_per_batch_shape`, with every batch full.

    The last batch is padded with copies of the last row, whose outputs are then cut off: the
    result is the same, and the prediction step compiles once for any number of rows.
    """
    padding = -len(x) % batch_size
    if padding and len(x) and compiles_per_batch_shape():
        x = np.concatenate([x, np.repeat(x[-1:], padding, axis=0)])
        return model.predict(x, batch_size=batch_size, verbose=0)[:-padding]
    return model.predict(x, batch_size=batch_size, verbose=0)


def require_tensorflow(feature: str) -> None:
    """Raise :class:`BackendError` unless Keras runs on TensorFlow.

    Parameters
    ----------
    feature : str
        What needs TensorFlow, for the message.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"{feature} needs Keras' TensorFlow backend, but Keras runs on {backend!r}. "
            f"Set KERAS_BACKEND=tensorflow (with TensorFlow installed), or do without it. "
            f"Received: KERAS_BACKEND={backend}"
        )
