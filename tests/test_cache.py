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

    def recording(array):
        hashed.append(array)
        return real(array)

    real = skfer.cache.row_fingerprints
    monkeypatch.setattr(skfer.cache, "row_fingerprints", recording)
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


def _dense(inputs: int, outputs: int, seed: int = 0):
    import keras

    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


@pytest.mark.parametrize("spill_bytes", [10**9, 1], ids=["in memory", "on disk"])
def test_rows_of_a_stored_input_are_served_without_computing(spill_bytes, tmp_path):
    cache = FeatureCache(spill_bytes=spill_bytes, directory=str(tmp_path))
    first, second = _dense(4, 6), _dense(6, 3, seed=1)
    images = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    maps = cache.features(first, images, graph={"stage": 1}, batch_size=8)
    pooled = cache.features(second, maps, graph={"stage": 2}, batch_size=8)
    rows = np.array([30, 2, 2, 17, 39, 0])  # any order, repeats
    part_maps = cache.features(first, images[rows], graph={"stage": 1}, batch_size=8)
    part_pooled = cache.features(second, part_maps, graph={"stage": 2}, batch_size=8)
    assert (cache.hits, cache.misses) == (2, 2)
    np.testing.assert_array_equal(np.asarray(part_maps), np.asarray(maps)[rows])
    np.testing.assert_array_equal(np.asarray(part_pooled), np.asarray(pooled)[rows])
    with pytest.raises(ValueError, match="read-only"):
        if spill_bytes > 1:
            part_maps[0] = 0
        else:
            part_maps.write(0, np.zeros((1, 6)))
    # a view on disk holds no bytes of its own, a copy in memory does
    copies = 0 if spill_bytes == 1 else part_maps.nbytes + part_pooled.nbytes
    assert cache.nbytes == maps.nbytes + pooled.nbytes + copies
    # the same subset again is a plain hit
    assert cache.features(first, images[rows], graph={"stage": 1}, batch_size=8) is part_maps
    assert (cache.hits, cache.misses) == (3, 2)


def test_rows_are_served_only_from_the_same_model_and_only_when_all_are_there():
    cache = FeatureCache()
    model = _dense(4, 6)
    images = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    cache.features(model, images, graph={"stage": 1}, batch_size=8)
    new_row = np.concatenate([images[:5], images[:1] + 1])
    other_weights, other_graph = _dense(4, 6, seed=2), {"stage": 1, "input_size": 48}
    cache.features(model, new_row, graph={"stage": 1}, batch_size=8)
    cache.features(other_weights, images[:5], graph={"stage": 1}, batch_size=8)
    cache.features(model, images[:5], graph=other_graph, batch_size=8)
    cache.features(model, images[:5], graph={"stage": 1}, batch_size=8, dtype="float16")
    cache.features(model, images[:5].astype(np.float64), graph={"stage": 1}, batch_size=8)
    assert (cache.hits, cache.misses) == (0, 6)
    served = cache.features(model, images[:5], graph={"stage": 1}, batch_size=8)
    assert cache.hits == 1
    np.testing.assert_allclose(served, model.predict(images[:5], verbose=0), rtol=1e-6)


def test_a_view_is_evicted_with_the_array_it_reads(tmp_path):
    model = _dense(4, 8)
    row_bytes = 8 * 4
    cache = FeatureCache(max_bytes=30 * row_bytes, spill_bytes=1, directory=str(tmp_path))
    images = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    cache.features(model, images, graph={}, batch_size=8)
    view = cache.features(model, images[:10], graph={}, batch_size=8)
    assert view.base is not None and cache.nbytes == 20 * row_bytes
    cache.features(model, images[:15] + 1, graph={}, batch_size=8)  # evicts both
    assert cache.nbytes == 15 * row_bytes
    cache.features(model, images[:10], graph={}, batch_size=8)
    assert (cache.hits, cache.misses) == (1, 3)
    np.testing.assert_array_equal(view[:], model.predict(images[:10], verbose=0))


def test_a_copy_in_memory_outlives_the_array_it_came_from():
    model = _dense(4, 8)
    row_bytes = 8 * 4
    cache = FeatureCache(max_bytes=35 * row_bytes)
    images = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    cache.features(model, images, graph={}, batch_size=8)
    copy = cache.features(model, images[:10], graph={}, batch_size=8)
    assert cache.nbytes == 30 * row_bytes
    cache.features(model, images[:10] + 1, graph={}, batch_size=8)  # evicts the 20 rows
    assert cache.nbytes == 20 * row_bytes
    assert cache.features(model, images[:10], graph={}, batch_size=8) is copy
    assert (cache.hits, cache.misses) == (2, 2)
