"""Ending the long phase on the mean of its last epochs' weights (``average_last_epochs``)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import two_class_images

from skfer import TransferCNNClassifier, get_backbone, load
from skfer.backend import OrderedBatches
from skfer.model import build_transfer_model
from skfer.presets import PRESETS, smoke_preset
from skfer.training import (
    Phase,
    RecentWeights,
    TrainingSettings,
    _end_on_mean,
    mean_weights,
    train,
)

SPEC = get_backbone("tiny_test_cnn")
SETTINGS = TrainingSettings(batch_size=16, patience=None, cache_features=False, verbose=0)
SHORT = Phase("short", 2, 1e-2, trainable_blocks=0)


def _model():
    return build_transfer_model(SPEC, channels=1, n_classes=2, input_size=16, head=(8,), seed=0)


def _data():
    X, y = two_class_images(96, 16, darken=4)
    return (X[:72], y[:72]), (X[72:], y[72:])


class EpochWeights(keras.callbacks.Callback):
    """The weights at the end of every epoch, by epoch index."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = self.model.get_weights()


def test_mean_weights_averages_floats_and_keeps_the_last_of_the_rest():
    first = [np.array([1.0, 2.0], np.float32), np.array([7], np.int64)]
    second = [np.array([2.0, 5.0], np.float32), np.array([9], np.int64)]
    mean = mean_weights([first, second])
    np.testing.assert_array_equal(mean[0], [1.5, 3.5])
    assert mean[0].dtype == np.float32
    np.testing.assert_array_equal(mean[1], [9])


def test_the_long_phase_ends_on_the_mean_of_its_last_epochs():
    data, validation = _data()
    model, seen = _model(), EpochWeights()
    long = Phase("long", 3, 1e-3, trainable_blocks=1, average_epochs=2)
    result = train(model, SPEC, [SHORT, long], data, validation, settings=SETTINGS, seed=0,
                   callbacks=[seen])  # fmt: skip
    # Epochs 1-2 short, 3-5 long: the last two long ones, counted from 1 as in the log.
    (average,) = result.weight_averages
    assert average.phase == "long" and average.epochs == (4, 5)
    assert average.kept and average.best_epoch_score is None  # no early stopping: always
    expected = mean_weights([seen.weights[3], seen.weights[4]])
    for got, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert not np.allclose(model.get_weights()[-2], seen.weights[4][-2])  # not the last epoch
    # Its score is the mean weights' own accuracy on the validation data.
    probabilities = keras.ops.convert_to_numpy(model.predict(validation[0], verbose=0))
    assert average.score == pytest.approx(np.mean(probabilities.argmax(1) == validation[1]))


def _good_and_wrecked_weights():
    """A model trained to separate the two classes, and its weights negated."""
    data, validation = _data()
    model = _model()
    train(model, SPEC, [SHORT, Phase("long", 3, 1e-3, None)], data, validation,
          settings=SETTINGS, seed=0)  # fmt: skip
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    good = model.get_weights()
    return model, validation, good, [-w for w in good]


@pytest.mark.parametrize("wrecked_member", [False, True])
def test_the_mean_is_kept_only_where_it_scores_at_least_as_well_as_the_best_epoch(
    wrecked_member,
):
    model, validation, good, wrecked = _good_and_wrecked_weights()
    best = model.evaluate(*validation, verbose=0, return_dict=True)["accuracy"]
    assert best >= 0.9  # the two classes are easy: the test below compares against a real best
    recent = RecentWeights(2)
    recent.weights.extend([good, wrecked if wrecked_member else good])
    recent.epochs.extend([3, 4])
    average = _end_on_mean(
        model,
        recent,
        OrderedBatches(*validation, batch_size=16),
        SimpleNamespace(best=best),
        Phase("long", 3, 1e-3, None, average_epochs=2),
        dataclasses.replace(SETTINGS, patience=2),
    )
    # The mean of a model and its negation is all zeros: a constant guess, half right.
    assert average.kept is (not wrecked_member)
    assert average.best_epoch_score == pytest.approx(best) and average.epochs == (4, 5)
    if wrecked_member:
        assert average.score == pytest.approx(0.5)
    for got, want in zip(model.get_weights(), good, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)  # the best epoch, either way


def test_the_classifier_reports_the_mean_and_keeps_the_record_through_save(tiny_params, tmp_path):
    X, y = two_class_images(96, 16, darken=4)
    params = {**tiny_params, "long_epochs": 3, "unfreeze_blocks": 1, "patience": 2}
    clf = TransferCNNClassifier(**params, average_last_epochs=2)
    clf.fit(X[:72], y[:72], validation_data=(X[72:], y[72:]))
    record = clf.weight_average_
    assert record["epochs"] == [clf.long_phase_start_ + 2, clf.long_phase_start_ + 3]
    assert record["kept"] is (record["score"] >= record["best_epoch_score"])
    assert load(clf.save(tmp_path / "m.skfer")).weight_average_ == record
    plain = TransferCNNClassifier(**params).fit(X[:72], y[:72], validation_data=(X[72:], y[72:]))
    assert plain.weight_average_ is None


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(average_last_epochs=1), "average_last_epochs"),
        (dict(average_last_epochs=3, long_epochs=2), "it cannot exceed long_epochs"),
        (dict(average_last_epochs=2, long_epochs=0), "it cannot exceed long_epochs"),
        (dict(average_last_epochs=2, long_epochs=2, head_batchnorm=True), "head_batchnorm=True"),
        (
            dict(average_last_epochs=2, long_epochs=2, batchnorm_training=True),
            "batchnorm_training=True",
        ),
    ],
)
def test_bad_averaging_parameters_are_refused_before_any_work(tiny_params, params, message):
    X, y = two_class_images(8, 16, darken=4)
    with pytest.raises(ValueError, match=message):
        TransferCNNClassifier(**{**tiny_params, **params}).fit(X, y)


def test_a_smoke_run_of_an_averaging_plan_averages_nothing():
    plan = PRESETS["cpu"]
    first = plan.base_models[0]
    averaging = dataclasses.replace(
        plan,
        base_models=(
            dataclasses.replace(first, params={**first.params, "average_last_epochs": 3}),
        ),
    )
    (small,) = smoke_preset(averaging).base_models
    assert small.params["long_epochs"] == 1 and small.params["average_last_epochs"] is None
