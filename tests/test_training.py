"""The training module on its own: phases, shuffling, the choice between phases, the cache."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import two_class_images

from skfer import get_backbone
from skfer.cache import FeatureCache, feature_cache
from skfer.model import build_transfer_model
from skfer.training import Phase, ShuffledBatches, TrainingSettings, train

SPEC = get_backbone("tiny_test_cnn")
SETTINGS = TrainingSettings(batch_size=16, patience=2, verbose=0)
SHORT = Phase("short", 3, 1e-2, trainable_blocks=0)
WRECKING_LONG = Phase("long", 2, 1e3, trainable_blocks=None)  # a huge rate wrecks the network


def _model(precision="float32"):
    return build_transfer_model(
        SPEC, channels=1, n_classes=2, input_size=16, head=(8,), seed=0, precision=precision
    )


def _data():
    X, y = two_class_images(96, 16, darken=4)
    return (X[:72], y[:72]), (X[72:], y[72:])


def _predict(model, X):
    return keras.ops.convert_to_numpy(model.predict(X, verbose=0))


def test_a_phase_is_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHORT.epochs = 4
    assert SHORT.backbone_frozen and not WRECKING_LONG.backbone_frozen


def test_shuffled_batches_depend_on_seed_and_epoch_only():
    x = np.arange(10)
    first = ShuffledBatches(x, x, 4, seed=1)
    assert len(first) == 3 and [len(first[i][0]) for i in range(3)] == [4, 4, 2]
    epoch0 = np.concatenate([first[i][0] for i in range(3)])
    first.on_epoch_end()
    epoch1 = np.concatenate([first[i][0] for i in range(3)])
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert not np.array_equal(epoch0, epoch1)
    resumed = ShuffledBatches(x, x, 4, seed=1, epoch=1)  # a resumed phase: same order
    np.testing.assert_array_equal(np.concatenate([resumed[i][0] for i in range(3)]), epoch1)


def test_full_batches_fill_the_last_batch_from_the_start_of_the_same_order():
    x = np.arange(10)
    full = ShuffledBatches(x, x, 4, seed=1, full_batches=True)
    plain = ShuffledBatches(x, x, 4, seed=1)
    assert len(full) == 3 and [len(full[i][0]) for i in range(3)] == [4, 4, 4]
    epoch = np.concatenate([full[i][0] for i in range(3)])
    np.testing.assert_array_equal(epoch[:10], np.concatenate([plain[i][0] for i in range(3)]))
    np.testing.assert_array_equal(epoch[10:], epoch[:2])  # every row once, two of them twice
    tiny = ShuffledBatches(x[:3], x[:3], 8, seed=1, full_batches=True)  # fewer rows than a batch
    assert sorted(set(tiny[0][0])) == [0, 1, 2] and len(tiny[0][0]) == 8


def test_the_cache_is_injected(tiny_params):
    feature_cache.clear()
    cache = FeatureCache()
    data, validation = _data()
    train(_model(), SPEC, [SHORT], data, validation, settings=SETTINGS, seed=0, cache=cache)
    assert cache.misses == 2 and feature_cache.misses == 0


def test_a_long_phase_that_never_beats_the_short_one_is_undone():
    data, validation = _data()
    short_only = _model()
    train(short_only, SPEC, [SHORT], data, validation, settings=SETTINGS, seed=0)
    both = _model()
    result = train(both, SPEC, [SHORT, WRECKING_LONG], data, validation, settings=SETTINGS, seed=0)
    assert result.history["phase"].count("long") >= 1 and result.interrupted_phase is None
    np.testing.assert_allclose(_predict(both, data[0]), _predict(short_only, data[0]), atol=1e-6)


def test_ctrl_c_in_the_long_phase_still_keeps_the_better_phase():
    data, validation = _data()
    short_only = _model()
    train(short_only, SPEC, [SHORT], data, validation, settings=SETTINGS, seed=0)

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == SHORT.epochs:  # after the first long epoch
                raise KeyboardInterrupt

    both = _model()
    result = train(
        both, SPEC, [SHORT, WRECKING_LONG], data, validation, settings=SETTINGS, seed=0,
        callbacks=[CtrlC()],
    )  # fmt: skip
    assert result.interrupted_phase == "long"
    np.testing.assert_allclose(_predict(both, data[0]), _predict(short_only, data[0]), atol=1e-6)


def test_mixed_float16_scales_the_loss_on_cached_features():
    optimizers = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizers.append(self.model.optimizer)

    data, _ = _data()
    settings = dataclasses.replace(SETTINGS, patience=None)
    phases = [Phase("short", 1, 1e-2, 0), Phase("long", 1, 1e-3, None)]
    train(_model("mixed_float16"), SPEC, phases, data, None, settings=settings, seed=0,
          callbacks=[Spy()], cache=FeatureCache())  # fmt: skip
    assert len(optimizers) == 2
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers)


def test_same_seed_same_weights_and_the_seed_matters():
    data, validation = _data()
    models = [_model() for _ in range(3)]
    for model, seed in zip(models, (0, 0, 1), strict=True):
        train(model, SPEC, [SHORT], data, validation, settings=SETTINGS, seed=seed,
              cache=FeatureCache())  # fmt: skip
    first, same, other = (_predict(model, data[0]) for model in models)
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first, other)  # another shuffle


def test_shuffled_batches_read_each_row_from_the_mirror_half_of_the_time():
    x = np.arange(400, dtype=np.float32).reshape(100, 2, 2)
    mirrored = -x
    first = ShuffledBatches(x, np.arange(100), 10, seed=3, mirrored=mirrored)
    batches = [first[i] for i in range(len(first))]
    rows = np.concatenate([batch[1] for batch in batches])
    seen = np.concatenate([batch[0] for batch in batches])
    from_mirror = seen[:, 1, 1] < 0
    np.testing.assert_array_equal(seen, np.where(from_mirror[:, None, None], -x[rows], x[rows]))
    assert 30 < from_mirror.sum() < 70
    again = ShuffledBatches(x, np.arange(100), 10, seed=3, mirrored=mirrored)
    np.testing.assert_array_equal(again[4][0], batches[4][0])
    first.on_epoch_end()
    resumed = ShuffledBatches(x, np.arange(100), 10, seed=3, epoch=1, mirrored=mirrored)
    np.testing.assert_array_equal(first[4][0], resumed[4][0])
    with pytest.raises(ValueError, match="mirrored must be aligned with x"):
        ShuffledBatches(x, np.arange(100), 10, seed=3, mirrored=mirrored[:5])


class _CountingRows:
    """An array that counts the rows read from it (as a DiskArray reads them from disk)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.rows_read = array, array.shape, array.dtype, 0

    def __getitem__(self, rows):
        self.rows_read += len(rows)
        return self.array[rows]


def test_shuffled_batches_read_each_row_once_from_the_array_it_comes_from():
    x = np.arange(400, dtype=np.float32).reshape(100, 2, 2)
    plain, mirrored = _CountingRows(x), _CountingRows(-x)
    batches = ShuffledBatches(plain, np.arange(100), 10, seed=3, mirrored=mirrored)
    for i in range(len(batches)):
        batches[i]
    assert plain.rows_read + mirrored.rows_read == 100
    assert 30 < mirrored.rows_read < 70
