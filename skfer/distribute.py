"""Multi-device training: synchronous data parallelism, the way each Keras backend does it.

:func:`make_strategy` turns the estimator's ``distribution`` into the object to build, compile
and fit under: None (the default device), a ``keras.distribution.DataParallel`` (JAX) or a
``tf.distribute.MirroredStrategy`` (TensorFlow). Both have a ``scope()`` context manager, which
:func:`strategy_scope` enters. Each copies the model onto every device and splits every batch
between them.
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from .backend import BackendError, require_tensorflow

__all__ = ["DISTRIBUTIONS", "device_count", "even_rows", "make_strategy", "strategy_scope"]

DISTRIBUTIONS = (None, "data_parallel", "mirrored")


def make_strategy(distribution: str | None, *, batch_size: int | None = None):
    """The distribution or strategy for ``distribution``, or None for the default device.

    Parameters
    ----------
    distribution : {None, 'data_parallel', 'mirrored'}
        ``'data_parallel'``: every device of the backend's default kind, the backend's way. On
        JAX a ``keras.distribution.DataParallel`` over ``keras.distribution.list_devices()``
        (the GPUs, else the CPU devices); on TensorFlow ``'mirrored'``. With one device it
        gives None: the same training as without. ``'mirrored'``:
        ``tf.distribute.MirroredStrategy`` over every GPU (or every logical CPU device), on
        TensorFlow only, even with one device.
    batch_size : int or None
        Images per step. On JAX every batch is split evenly, so it must be a multiple of the
        device count.

    Returns
    -------
    keras.distribution.DataParallel, tf.distribute.MirroredStrategy or None
    """
    if distribution is None:
        return None
    if distribution == "mirrored":
        return _mirrored_strategy()
    if distribution != "data_parallel":
        raise ValueError(
            f"distribution must be one of {DISTRIBUTIONS}. Received: distribution={distribution!r}"
        )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = _mirrored_strategy()
        return strategy if strategy.num_replicas_in_sync > 1 else None
    if backend != "jax":
        raise BackendError(
            f"distribution='data_parallel' needs Keras' JAX or TensorFlow backend, but Keras "
            f"runs on {backend!r}. Received: KERAS_BACKEND={backend}"
        )
    devices = keras.distribution.list_devices()
    if len(devices) == 1:
        return None
    if batch_size is not None and batch_size % len(devices):
        raise ValueError(
            f"distribution='data_parallel' splits every batch evenly between the "
            f"{len(devices)} devices ({', '.join(devices)}), so batch_size must be a multiple "
            f"of {len(devices)}. Received: batch_size={batch_size}"
        )
    return keras.distribution.DataParallel(devices=devices)


def _mirrored_strategy():
    require_tensorflow("distribution='mirrored' (tf.distribute.MirroredStrategy)")
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def strategy_scope(strategy):
    """``strategy.scope()``, or a no-op context for None. Build, compile and fit inside it."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def device_count(strategy) -> int:
    """Devices that ``strategy`` (from :func:`make_strategy`) trains on; 1 for None."""
    if strategy is None:
        return 1
    if isinstance(strategy, keras.distribution.DataParallel):
        return strategy.num_model_replicas
    return strategy.num_replicas_in_sync


def even_rows(data: tuple | None, strategy) -> tuple | None:
    """``data``, arrays of one row per image, cut to a multiple of the device count.

    Under a ``keras.distribution.DataParallel`` every batch that Keras evaluates is split
    evenly, the last, partial one of the validation data too: this drops its last rows, at most
    one fewer than there are devices. Unchanged for None and for ``tf.distribute``, which
    splits uneven batches itself.
    """
    if data is None or not isinstance(strategy, keras.distribution.DataParallel):
        return data
    rows = len(data[0]) - len(data[0]) % device_count(strategy)
    if rows < len(data[0]):
        warnings.warn(
            f"distribution='data_parallel' splits every batch evenly between "
            f"{device_count(strategy)} devices: the last {len(data[0]) - rows} of the "
            f"{len(data[0])} validation images are left out of early stopping. Pass a "
            "multiple of the device count to use them all.",
            UserWarning,
            stacklevel=3,
        )
    return tuple(part[:rows] for part in data)
