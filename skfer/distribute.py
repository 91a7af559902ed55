"""Multi-device training through TensorFlow's own ``tf.distribute`` strategies."""

from __future__ import annotations

import contextlib

from .backend import require_tensorflow

__all__ = ["DISTRIBUTIONS", "make_strategy", "strategy_scope"]

DISTRIBUTIONS = (None, "mirrored")


def make_strategy(distribution: str | None):
    """The ``tf.distribute`` strategy for ``distribution``, or None for the default device.

    ``'mirrored'`` replicates the model on every GPU (or, without one, every logical CPU
    device) and splits each batch between them: synchronous data parallelism.
    """
    if distribution is None:
        return None
    if distribution == "mirrored":
        require_tensorflow("distribution='mirrored' (tf.distribute.MirroredStrategy)")
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    raise ValueError(
        f"distribution must be one of {DISTRIBUTIONS}. Received: distribution={distribution!r}"
    )


def strategy_scope(strategy):
    """``strategy.scope()``, or a no-op context for None. Build, compile and fit inside it."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()
