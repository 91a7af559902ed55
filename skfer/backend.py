"""What depends on Keras' backend: where to compile, and the TensorFlow-only features.

skfer's core is written in ``keras.ops`` and runs on Keras 3's TensorFlow backend (the default
and the install's dependency) and on its JAX backend (``KERAS_BACKEND=jax``). A few features
use TensorFlow itself; they raise :class:`BackendError` elsewhere, saying what to do instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np

__all__ = [
    "PREFETCH_BATCHES",
    "BackendError",
    "EpochEnd",
    "OrderedBatches",
    "compiles_per_batch_shape",
    "keras_input",
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


class OrderedBatches(keras.utils.PyDataset):
    """Consecutive batches of ``x`` (and ``y``), as Keras batches arrays: the last may be
    smaller.

    ``x`` and ``y`` need only ``len`` and slicing by rows (a
    :class:`~skfer.disk_array.DiskArray` has both); each batch is read when asked for, so
    neither is copied or cast whole.
    """

    def __init__(self, x, y=None, *, batch_size: int):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return (self.x[rows],) if self.y is None else (self.x[rows], self.y[rows])


PREFETCH_BATCHES = 2
"""Batches that :func:`keras_input`'s pipeline reads ahead of the step using them."""


class EpochEnd(keras.callbacks.Callback):
    """Calls ``batches.on_epoch_end()`` at the end of each epoch of ``fit``, as Keras does for
    a ``PyDataset`` it is given itself (:func:`keras_input`)."""

    def __init__(self, batches: keras.utils.PyDataset):
        super().__init__()
        self.batches = batches

    def on_epoch_end(self, epoch, logs=None):
        self.batches.on_epoch_end()


class _EpochsByCallback(keras.utils.PyDataset):
    """``batches`` read through, with their ``on_epoch_end`` left to :class:`EpochEnd`: Keras
    calls a ``PyDataset``'s ``on_epoch_end`` once more when ``fit`` starts (its epoch
    iterator's ``reset``), which would train the first epoch on the second epoch's order."""

    def __init__(self, batches: keras.utils.PyDataset):
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index]


@contextlib.contextmanager
def keras_input(batches: keras.utils.PyDataset) -> Iterator[tuple[object, list]]:
    """``batches`` as skfer hands them to Keras' ``fit``, ``evaluate`` and ``predict``, for the
    duration of a ``with`` block.

    On TensorFlow, a ``tf.data`` pipeline that reads them in order, :data:`PREFETCH_BATCHES`
    ahead of the step in one background thread, with tf.data's autotuning off. Keras' own
    pipeline for a ``PyDataset`` or an array is autotuned, and freeing its iterator (at the
    end of every epoch, validation and ``predict`` call) waited for the autotuning thread to
    wake, the CPU idle for up to 30 s at a time: a third of the cpu preset's block-12 maps'
    computation, 25 s of one long epoch in two (docs/benchmarks.md). Elsewhere (JAX), the
    batches as a ``PyDataset`` whose epochs end by the callback below: Keras' pipeline there
    has no autotuning, and either way the first epoch takes the batches' epoch-0 order.

    TensorFlow keeps the generator of every ``from_generator`` pipeline, Keras' own included,
    for the rest of the process, and with it whatever the generator refers to (run v19 of the
    cpu preset, whose predictions went through such pipelines, peaked at 22.8 GB). This
    pipeline reaches ``batches`` through a reference that leaving the block drops, so that
    only the generator's own few bytes stay behind.

    Yields
    ------
    data : tf.data.Dataset or keras.utils.PyDataset
        For ``fit``'s ``x`` or ``validation_data``, or ``predict``'s ``x``, inside the block.
    callbacks : list of keras.callbacks.Callback
        For ``fit`` when ``data`` trains: :class:`EpochEnd`, which calls the batches'
        ``on_epoch_end`` after each epoch and never before the first.
    """
    if keras.backend.backend() != "tensorflow":
        yield _EpochsByCallback(batches), [EpochEnd(batches)]
        return
    import tensorflow as tf

    source = [batches]

    def read():
        if not source:
            raise RuntimeError(
                "A pipeline of skfer.backend.keras_input was read after its with block; use "
                "it inside the block."
            )
        # The epoch's order is the one the batches have when the step asks for its first one.
        current = source[0]
        for index in range(len(current)):
            yield current[index]

    signature = tuple(
        tf.TensorSpec((None, *np.shape(part)[1:]), tf.as_dtype(np.asarray(part).dtype))
        for part in batches[0]
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    data = (
        tf.data.Dataset.from_generator(read, output_signature=signature)
        .apply(tf.data.experimental.assert_cardinality(len(batches)))
        .with_options(options)
        .prefetch(PREFETCH_BATCHES)
    )
    try:
        yield data, [EpochEnd(batches)]
    finally:
        source.clear()


def predict_in_full_batches(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict(x)`` in batches of ``batch_size`` through :func:`keras_input`; where
    :func:`compiles_per_batch_shape`, with every batch full.

    The last batch is padded with copies of the last row, whose outputs are then cut off: the
    result is the same, and the prediction step compiles once for any number of rows.
    """
    if len(x) and not compiles_per_batch_shape():
        with keras_input(OrderedBatches(x, batch_size=batch_size)) as (data, _):
            return model.predict(data, verbose=0)
    padding = -len(x) % batch_size
    if padding and len(x):
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
