"""What depends on Keras' backend: where to compile, and the TensorFlow-only features.

skfer's core is written in ``keras.ops`` and runs on Keras 3's TensorFlow backend (the default
and the install's dependency) and on its JAX backend (``KERAS_BACKEND=jax``). A few features
use TensorFlow itself; they raise :class:`BackendError` elsewhere, saying what to do instead.
"""

from __future__ import annotations

import keras

__all__ = ["BackendError", "require_tensorflow", "resolve_jit_compile"]


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
