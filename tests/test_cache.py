"""The frozen phase on cached backbone features: same result, computed once, never stale."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import two_class_images

from skfer import TransferCNNClassifier
from skfer.cache import FeatureCache, feature_cache


@pytest.fixture(autouse=True)
def empty_cache():
    feature_cache.clear()
    yield
    feature_cache.clear()


def _head_weights(clf):
    return [
        w
        for name in ("head_dense_1", "predictions")
        for w in clf.model_.get_layer(name).get_weights()
    ]


def test_cached_and_uncached_frozen_phase_give_the_same_head(tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    params = {**tiny_params, "short_epochs": 3, "long_epochs": 0, "validation_fraction": 0.25}
    cached = TransferCNNClassifier(**params, cache_features=True).fit(X, y)
    assert feature_cache.misses == 2  # training and validation features, once each
    uncached = TransferCNNClassifier(**params, cache_features=False).fit(X, y)
    for a, b in zip(_head_weights(cached), _head_weights(uncached), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cached.history_["loss"], uncached.history_["loss"], rtol=1e-4)
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-5)


def test_same_backbone_and_data_compute_features_once(tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    params = {**tiny_params, "long_epochs": 0}
    TransferCNNClassifier(**params).fit(X, y)
    TransferCNNClassifier(**{**params, "head": (4,)}).fit(X, y)  # another head: same features
    TransferCNNClassifier(**params).fit(X, y == 1)  # other labels: same features
    assert (feature_cache.misses, feature_cache.hits) == (1, 2)


@pytest.mark.parametrize(
    "change",
    ["data", "input_size", "weights", "precision"],
)
def test_cache_is_invalidated_when_data_weights_input_size_or_precision_change(tiny_params, change):
    X, y = two_class_images(64, 16, darken=3)
    params = {**tiny_params, "long_epochs": 0}
    TransferCNNClassifier(**params).fit(X, y)
    if change == "data":
        X = X.copy()
        X[0, 0, 0] ^= 1
    elif change == "input_size":
        params["input_size"] = 12
    elif change == "precision":
        params["precision"] = "mixed_bfloat16"
    else:
        params["random_state"] = 1  # another random initialisation of the backbone
    TransferCNNClassifier(**params).fit(X, y)
    assert (feature_cache.misses, feature_cache.hits) == (2, 0)


def test_augmentation_takes_the_normal_path(tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    TransferCNNClassifier(**{**tiny_params, "augmentation": True, "long_epochs": 0}).fit(X, y)
    assert feature_cache.misses == feature_cache.hits == 0


def test_cache_is_bounded_and_evicts_the_oldest():
    import keras

    cache = FeatureCache(max_bytes=3 * 64 * 4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64, use_bias=False)])
    for value in range(5):
        cache.features(model, np.full((1, 4), value, dtype=np.float32), graph={}, batch_size=1)
    assert cache.nbytes <= cache.max_bytes and cache.misses == 5
    cache.features(model, np.full((1, 4), 4, dtype=np.float32), graph={}, batch_size=1)
    cache.features(model, np.full((1, 4), 0, dtype=np.float32), graph={}, batch_size=1)
    assert (cache.hits, cache.misses) == (1, 6)


def test_an_input_that_is_a_cached_entry_is_keyed_without_hashing_its_bytes(monkeypatch):
    import keras

    import skfer.cache

    cache = FeatureCache(max_bytes=2 * 8 * 64 * 4)
    first = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64, use_bias=False)])
    second = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3, use_bias=False)])
    images = np.arange(32, dtype=np.float32).reshape(8, 4)
    maps = cache.features(first, images, graph={"stage": 1}, batch_size=4)
    hashed = []

    def recording(*parts):
        hashed.extend(part for part in parts if isinstance(part, np.ndarray))
        return real(*parts)

    real = skfer.cache.fingerprint
    monkeypatch.setattr(skfer.cache, "fingerprint", recording)
    pooled = cache.features(second, maps, graph={"stage": 2}, batch_size=4)
    assert not any(part is maps for part in hashed)
    assert cache.features(second, maps, graph={"stage": 2}, batch_size=4) is pooled
    # the same bytes in an array the cache does not hold are hashed, so a copy is a new key
    cache.features(second, maps.copy(), graph={"stage": 2}, batch_size=4)
    assert (cache.hits, cache.misses) == (1, 3)
    np.testing.assert_allclose(pooled, second.predict(maps, verbose=0), rtol=1e-6)
    # once the first stage's entry is gone, the array no longer stands for its key
    cache.clear()
    hashed.clear()
    cache.features(second, maps, graph={"stage": 2}, batch_size=4)
    assert any(part is maps for part in hashed)
