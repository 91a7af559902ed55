"""The accuracy levers of issue 21: label smoothing, mixup and test-time crops."""

from __future__ import annotations

import json
import textwrap
import zipfile

import numpy as np
import pytest
from conftest import run_on_jax, two_class_images

import skfer
from skfer import TransferCNNClassifier
from skfer.cache import feature_cache
from skfer.training import ShuffledBatches, mixup


def _cross_entropy(proba, targets, label_smoothing):
    """Keras' categorical cross-entropy of probabilities against smoothed target rows."""
    smoothed = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    return float(np.mean(-np.sum(smoothed * np.log(np.clip(proba, 1e-7, 1 - 1e-7)), axis=1)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("label_smoothing", 1.0),
        ("label_smoothing", -0.1),
        ("label_smoothing", float("nan")),
        ("label_smoothing", "0.1"),
        ("mixup_alpha", -0.2),
        ("mixup_alpha", float("inf")),
        ("test_time_crops", 10),
        ("test_time_crops", True),
        ("test_time_crop_fraction", 0.0),
        ("test_time_crop_fraction", 1.0),
    ],
)
def test_bad_lever_values_raise_a_value_error_naming_them(tiny_params, name, value):
    X, y = two_class_images(32, 16, darken=3)
    with pytest.raises(ValueError, match=f"^{name} must be .*Received: {name}="):
        TransferCNNClassifier(**tiny_params, **{name: value}).fit(X, y)


def test_test_time_parameters_are_checked_at_prediction_too(tiny_params):
    X, y = two_class_images(32, 16, darken=3)
    clf = TransferCNNClassifier(**{**tiny_params, "long_epochs": 0}).fit(X, y)
    for name, value in [("test_time_crops", 3), ("test_time_crop_fraction", 2.0)]:
        clf.set_params(**{name: value})
        with pytest.raises(ValueError, match=f"^{name} must be"):
            clf.predict_proba(X)
        clf.set_params(test_time_crops=1, test_time_crop_fraction=0.9)


@pytest.mark.parametrize(
    "phases",
    [
        dict(long_epochs=0, cache_features=True),  # the head on cached features
        dict(long_epochs=0, cache_features=False),  # the head in the whole model
        dict(short_epochs=0, long_epochs=1),  # the whole model learns
    ],
)
def test_label_smoothing_gives_the_validation_loss_of_its_formula(tiny_params, phases):
    X, y = two_class_images(64, 16, darken=3)
    X_val, y_val = two_class_images(32, 16, darken=3, seed=1)
    one_hot = np.eye(2)[y_val]
    for smoothing in (0.0, 0.2):
        clf = TransferCNNClassifier(**{**tiny_params, **phases}, label_smoothing=smoothing)
        clf.fit(X, y, validation_data=(X_val, y_val))
        expected = _cross_entropy(clf.predict_proba(X_val), one_hot, smoothing)
        assert clf.history_["val_loss"][-1] == pytest.approx(expected, rel=1e-4)
    assert _cross_entropy(clf.predict_proba(X_val), one_hot, 0.0) != pytest.approx(expected)


@pytest.mark.parametrize("cache_features", [True, False])
def test_label_smoothing_smooths_soft_targets_in_the_training_loss(tiny_params, cache_features):
    X, y = two_class_images(48, 16, darken=3)
    shares = np.random.default_rng(0).uniform(0.6, 1.0, 48)
    soft = np.stack([shares, 1 - shares], axis=1)
    soft[y == 1] = soft[y == 1, ::-1]  # rows in classes_ order, mostly on the label
    params = dict(tiny_params, long_epochs=0, dropout=0.0, short_learning_rate=1e-12)
    clf = TransferCNNClassifier(**params, label_smoothing=0.3, cache_features=cache_features)
    clf.fit(X, y, target_distribution=soft)
    # A rate of 1e-12 leaves the weights as they were: the epoch's mean loss is that of the
    # final model on all the training rows.
    expected = _cross_entropy(clf.predict_proba(X), soft, 0.3)
    assert clf.history_["loss"][0] == pytest.approx(expected, rel=1e-4)


def test_mixup_mixes_images_and_targets_with_one_beta_weight():
    n = 6
    x = (np.eye(n, dtype=np.uint8) * 255).reshape(n, 1, n, 1)  # image i: pixel i lit
    y = np.eye(n, dtype=np.float32)  # class i
    mixed_x, mixed_y = mixup(x, y, 0.4, np.random.default_rng(3))
    assert mixed_x.dtype == np.float32
    rng = np.random.default_rng(3)  # the same draws: the formula's values, to the bit
    lam, partner = np.float32(rng.beta(0.4, 0.4)), rng.permutation(n)
    as_float = x.astype(np.float32)
    np.testing.assert_array_equal(mixed_x, lam * as_float + (1 - lam) * as_float[partner])
    features = as_float.copy()  # float32 input (cached features): mixed on a copy, not in place
    mixup(features, y, 0.4, np.random.default_rng(3))
    np.testing.assert_array_equal(features, as_float)
    np.testing.assert_allclose(mixed_x.reshape(n, n) / 255, mixed_y, rtol=1e-6)
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1, rtol=1e-6)
    own = np.diag(mixed_y)  # lam, or 1 where a row was paired with itself
    assert len(set(own[own < 1].round(6))) == 1 and own.min() < 1
    draws = [mixup(x, y, 0.2, np.random.default_rng(seed))[1] for seed in range(2000)]
    lam = np.array([np.diag(draw).min() for draw in draws])  # min(lam, 1): a pair always
    assert np.mean(lam * (1 - lam)) == pytest.approx(0.2 / (2 * 1.4), rel=0.1)  # Beta(0.2, 0.2)


def test_mixed_batches_depend_only_on_seed_epoch_and_batch():
    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    y = np.eye(4, dtype=np.float32)[np.arange(20) % 4]
    first = ShuffledBatches(x, y, 8, seed=5, mixup_alpha=0.5)
    again = ShuffledBatches(x, y, 8, seed=5, mixup_alpha=0.5)
    for a, b in zip(first[1], again[1], strict=True):
        np.testing.assert_array_equal(a, b)
    plain = ShuffledBatches(x, y, 8, seed=5)
    assert not np.allclose(first[1][0], plain[1][0])  # mixed
    np.testing.assert_allclose(first[1][1].sum(axis=1), 1, rtol=1e-6)
    epoch_zero = first[0]
    first.on_epoch_end()
    resumed = ShuffledBatches(x, y, 8, seed=5, epoch=1, mixup_alpha=0.5)
    np.testing.assert_array_equal(first[0][0], resumed[0][0])
    assert not np.allclose(first[0][0], epoch_zero[0])


def test_mixup_is_repeatable_changes_training_and_zero_is_off(tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    base = dict(tiny_params, long_epochs=0, cache_features=False)  # one path with and without

    def proba(**params):
        return TransferCNNClassifier(**{**base, **params}).fit(X, y).predict_proba(X)

    plain = proba()
    np.testing.assert_array_equal(proba(mixup_alpha=0.0), plain)
    mixed = proba(mixup_alpha=0.2)
    np.testing.assert_array_equal(proba(mixup_alpha=0.2), mixed)
    assert not np.allclose(mixed, plain)
    assert not np.allclose(proba(mixup_alpha=0.2, random_state=1), mixed)


def test_mixup_turns_the_feature_cache_off(tiny_params):
    X, y = two_class_images(48, 16, darken=3)
    params = dict(tiny_params, long_epochs=0)
    feature_cache.clear()
    TransferCNNClassifier(**params).fit(X, y)
    assert feature_cache.misses == 1  # the head trained on cached features
    feature_cache.clear()
    TransferCNNClassifier(**params, mixup_alpha=0.2).fit(X, y)
    assert (feature_cache.misses, feature_cache.hits) == (0, 0)


@pytest.mark.parametrize("flip", [False, True])
def test_test_time_crops_average_the_five_crops(tiny_params, flip):
    X, y = two_class_images(40, 16, darken=3)
    clf = TransferCNNClassifier(**{**tiny_params, "long_epochs": 0}).fit(X, y)
    whole = clf.predict_proba(X)
    clf.set_params(test_time_crops=5, test_time_crop_fraction=0.75, test_time_flip=flip)
    images = X[..., np.newaxis].astype(np.float32)
    # 12 of 16 pixels: the corners start at 0 and 4, the centre crop at 2.
    views = [images[:, t : t + 12, s : s + 12] for t, s in [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]]
    if flip:
        views += [view[:, :, ::-1] for view in views]
    by_hand = np.mean([clf.model_.predict(view, verbose=0) for view in views], axis=0)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, by_hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(proba, whole)
    feature_cache.clear()
    np.testing.assert_allclose(clf.predict_proba_cached(X), proba, rtol=1e-5, atol=1e-7)
    assert feature_cache.misses == len(views)  # one cached entry per view
    clf.predict_proba_cached(X)
    assert feature_cache.hits == len(views)


def test_the_levers_survive_save_and_load(tiny_params, tmp_path):
    X, y = two_class_images(48, 16, darken=3)
    levers = dict(
        label_smoothing=0.1, mixup_alpha=0.2, test_time_crops=5, test_time_crop_fraction=0.8
    )
    clf = TransferCNNClassifier(**tiny_params, **levers).fit(X, y)
    path = skfer.save(clf, tmp_path / "levers.skfer")
    loaded = skfer.load(path)
    assert {name: loaded.get_params()[name] for name in levers} == levers
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    # A file written before the levers existed loads with them off.
    older = tmp_path / "older.skfer"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(older, "w") as target:
        for member in source.namelist():
            content = source.read(member)
            if member == "estimator.json":
                state = json.loads(content)
                for name in levers:
                    del state["params"][name]
                content = json.dumps(state)
            target.writestr(member, content)
    old = skfer.load(older).get_params()
    assert [old[name] for name in levers] == [0.0, 0.0, 1, 0.9]


JAX_LEVERS = textwrap.dedent(
    """
    import json
    import numpy as np
    import keras
    import skfer
    from skfer.backbones import TF_MODE, BackboneSpec, register_backbone

    def small_cnn(input_shape):
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
        return keras.Model(inputs, keras.layers.ReLU(name="relu")(x))

    register_backbone(BackboneSpec("small_cnn", small_cnn, TF_MODE, 16, 8,
                                   block_ends=("conv1", "relu")))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 16, 16), dtype=np.uint8)
    y = np.arange(64) % 2
    X[y == 1, :8] //= 3

    def fitted():
        return skfer.TransferCNNClassifier(
            "small_cnn", weights=None, input_size=16, head=(8,), short_epochs=1,
            long_epochs=1, batch_size=16, validation_fraction=0.25, label_smoothing=0.1,
            mixup_alpha=0.2, test_time_crops=5, test_time_flip=True, random_state=0,
            verbose=0,
        ).fit(X, y)

    clf = fitted()
    proba = clf.predict_proba(X)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "jit_compile": clf.model_.jit_compile,
        "proba_sums": proba.sum(axis=1).tolist(),
        "cached_difference": float(np.abs(clf.predict_proba_cached(X) - proba).max()),
        "repeat_difference": float(np.abs(fitted().predict_proba(X) - proba).max()),
        "losses": clf.history_["loss"],
    }))
    """
)


def test_mixup_and_crops_run_on_jax():
    report = run_on_jax(JAX_LEVERS)
    assert report["backend"] == "jax" and report["jit_compile"] is True
    assert report["proba_sums"] == pytest.approx([1.0] * 64, abs=1e-5)
    assert report["cached_difference"] < 1e-5
    assert report["repeat_difference"] == 0.0  # mixup's draws do not depend on the backend
    assert len(report["losses"]) == 2 and all(np.isfinite(report["losses"]))
