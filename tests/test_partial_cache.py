"""Partial fine-tuning on cached block maps: the same training, maps computed once per split."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import register_tiny_backbone, two_class_images

import skfer
from skfer import TransferCNNClassifier, get_backbone
from skfer.cache import FeatureCache, feature_cache, predict_in_chunks
from skfer.model import POOLING_LAYER, build_transfer_model, split_at_block
from skfer.training import BLOCK_MAP_DTYPE, cached_split

# The tiny test CNN cut into four blocks, so that 1, 2 and 3 top blocks have distinct splits.
register_tiny_backbone("tiny_test_cnn_four_blocks", ("conv1", "conv1_relu", "conv2", "conv2_relu"))


@pytest.fixture(autouse=True)
def empty_cache():
    feature_cache.clear()
    yield
    feature_cache.clear()


@pytest.fixture
def partial(tiny_params) -> dict:
    """The tiny classifier training its top block on cached maps; no choice between phases."""
    return {**tiny_params, "short_epochs": 2, "long_epochs": 3, "unfreeze_blocks": 1,
            "patience": None}  # fmt: skip


class TrainedInputs(keras.callbacks.Callback):
    """Records the dtype and shape of what each phase's trained model takes."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def on_train_begin(self, logs=None):
        self.inputs.append((self.model.inputs[0].dtype, tuple(self.model.inputs[0].shape)))


def _backbone_layer(clf, name):
    return clf.model_.get_layer("backbone").backbone.get_layer(name)


def test_a_cached_partial_fit_equals_the_uncached_one(partial, tmp_path):
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "validation_fraction": 0.25}
    spy = TrainedInputs()
    cached = TransferCNNClassifier(**params).fit(X, y, callbacks=[spy])
    # The maps, then the pooled features from them, of the training and validation images;
    # the long phase reuses the maps.
    assert (feature_cache.misses, feature_cache.hits) == (4, 2)
    assert spy.inputs[1] == (BLOCK_MAP_DTYPE, (None, 8, 8, 8))  # the long phase: conv1's maps
    uncached = TransferCNNClassifier(**params, cache_features=False).fit(X, y)
    assert cached.history_["phase"] == uncached.history_["phase"] == ["short"] * 2 + ["long"] * 3
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(cached.history_[key], uncached.history_[key], rtol=1e-4)
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-4)

    short_only = TransferCNNClassifier(**{**params, "long_epochs": 0}).fit(X, y)
    kernels = [_backbone_layer(clf, "conv2").get_weights()[0] for clf in (cached, short_only)]
    assert not np.allclose(*kernels)  # block 2 trained, through the whole model's layers
    np.testing.assert_array_equal(
        _backbone_layer(cached, "conv1").get_weights()[0],
        _backbone_layer(short_only, "conv1").get_weights()[0],
    )  # the block below stayed frozen
    loaded = skfer.load(cached.save(tmp_path / "partial.skfer"))
    np.testing.assert_allclose(loaded.predict_proba(X), cached.predict_proba(X), atol=1e-6)


def test_each_split_point_has_its_own_maps_computed_once(partial):
    X, y = two_class_images(64, 16, darken=3)
    params = {**partial, "backbone": "tiny_test_cnn_four_blocks", "short_epochs": 1,
              "long_epochs": 1}  # fmt: skip
    TransferCNNClassifier(**params).fit(X, y)
    # The short phase: the maps, then the pooled features from them; the long phase: the maps.
    assert (feature_cache.misses, feature_cache.hits) == (2, 1)
    TransferCNNClassifier(**{**params, "head": (4,)}).fit(X, y == 0)  # same weights, images
    assert (feature_cache.misses, feature_cache.hits) == (2, 4)
    for blocks in (2, 3):  # other boundaries: conv1_relu, conv1
        TransferCNNClassifier(**{**params, "unfreeze_blocks": blocks}).fit(X, y)
    assert (feature_cache.misses, feature_cache.hits) == (6, 6)
    spec = get_backbone("tiny_test_cnn_four_blocks")
    model = build_transfer_model(spec, channels=1, n_classes=2, input_size=16, head=(8,))
    splits = [cached_split(model, spec, blocks) for blocks in (0, 1, 2, 3)]
    splits += [cached_split(model, spec, 0, via_blocks=blocks) for blocks in (1, 2, 3)]
    # Pooled features computed directly and from each boundary's float16 maps never share
    # an entry: a model's features do not depend on which other models ran before it.
    graphs = [stage.graph for split in splits for stage in split.stages]
    assert len({repr(sorted(graph.items())) for graph in graphs}) == 7
    assert cached_split(model, spec, 4) is None and cached_split(model, spec, None) is None


@pytest.mark.parametrize("batchnorm_training", [False, True])
def test_batchnorm_of_the_trained_block_keeps_its_statistics(partial, batchnorm_training):
    X, y = two_class_images(64, 16, darken=3)
    clf = TransferCNNClassifier(**partial, batchnorm_training=batchnorm_training).fit(X, y)
    assert feature_cache.misses == 2  # the long phase ran on cached maps
    gamma, beta, moving_mean, moving_variance = _backbone_layer(clf, "conv2_bn").get_weights()
    assert not np.allclose(gamma, 1) and not np.allclose(beta, 0)  # scale and offset learn
    initial_statistics = np.allclose(moving_mean, 0) and np.allclose(moving_variance, 1)
    assert initial_statistics != batchnorm_training


def _peak_rss_bytes() -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024


def _rss_bytes() -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024


def test_block_maps_are_float16_and_computed_and_read_in_chunks():
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident memory
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    spec = get_backbone("tiny_test_cnn")
    model = build_transfer_model(spec, channels=1, n_classes=2, input_size=64, head=(8,))
    split = cached_split(model, spec, 1)  # conv1's maps: 32 x 32 x 8 per image
    images = np.random.default_rng(0).integers(0, 256, (2048, 64, 64), dtype=np.uint8)
    cache = FeatureCache(chunk_bytes=2**20)

    def maps(x):
        return split.features(x, cache=cache, batch_size=16)

    maps(images[:64])  # traces the prediction step
    float32_bytes = images.shape[0] * 32 * 32 * 8 * 4  # 64 MiB
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_bytes()
    stored = maps(images)
    peak = _peak_rss_bytes() - before
    assert stored.dtype == np.float16 and stored.shape == (2048, 32, 32, 8)
    # The float16 array (32 MiB) and a chunk; a float32 array of all maps would add 64 MiB.
    assert peak < 0.75 * float32_bytes, f"peak {peak / 2**20:.0f} MiB"
    np.testing.assert_allclose(stored[:64], maps(images[:64]))
    reference = split.stages[0].model.predict(images[-16:], verbose=0)
    np.testing.assert_allclose(stored[-16:], reference, rtol=2e-3, atol=1e-3)

    predict_in_chunks(split.trained, stored[:64], 16)  # traces the top part's prediction step
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_bytes()
    proba = predict_in_chunks(split.trained, stored, 16, chunk_bytes=2**20)
    peak = _peak_rss_bytes() - before
    # Keras casts a float16 array given whole to float32 (64 MiB here), and copies it.
    assert peak < 0.25 * float32_bytes, f"peak {peak / 2**20:.0f} MiB"
    np.testing.assert_allclose(proba[-16:], split.trained.predict(stored[-16:], verbose=0))


def test_maps_beyond_float16_raise():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones")(inputs))
    with pytest.raises(OverflowError, match="float16"):
        FeatureCache().features(
            model, np.full((4, 2), 5e4, np.float32), graph={}, batch_size=2, dtype="float16"
        )


@pytest.mark.parametrize("long_epochs", [0, 2], ids=["pooled_features", "block_maps"])
def test_flip_tta_on_the_cached_path_equals_the_uncached_one(partial, long_epochs):
    X, y = two_class_images(48, 16, darken=3)
    clf = TransferCNNClassifier(**{**partial, "long_epochs": long_epochs}, test_time_flip=True)
    clf.fit(X, y)
    feature_cache.clear()
    cached = clf.predict_proba_cached(X)
    # Per view (the images, their mirror): the float16 maps below the unfrozen block, and
    # without a long phase the float32 pooled features computed from them, as in training.
    stages = 1 if long_epochs else 2
    assert (feature_cache.misses, feature_cache.hits) == (2 * stages, 0)
    per_image = 8 * 8 * 8 * 2 + (0 if long_epochs else 16 * 4)
    assert feature_cache.nbytes == 2 * len(X) * per_image
    np.testing.assert_allclose(cached, clf.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(clf.predict_proba_cached(X), cached)
    assert (feature_cache.misses, feature_cache.hits) == (2 * stages, 2 * stages)


@pytest.mark.parametrize(
    "params",
    [{"long_epochs": 2}, {"unfreeze_blocks": None, "augmentation": True, "test_time_flip": True}],
    ids=["block_maps", "whole_backbone_augmented"],
)
def test_cache_predictions_predicts_from_the_cache(partial, params):
    """A stack predicts its members on the same images several times: with
    cache_predictions the backbone runs once, and the probabilities stay those of the model."""
    X, y = two_class_images(48, 16, darken=3)
    clf = TransferCNNClassifier(**{**partial, **params}).fit(X, y)
    uncached = clf.predict_proba(X)
    feature_cache.clear()
    clf.set_params(cache_predictions=True)
    first = clf.predict_proba(X)
    views = 1 + clf.test_time_flip
    assert (feature_cache.misses, feature_cache.hits) == (views, 0)
    np.testing.assert_allclose(first, uncached, atol=1e-4)
    assert clf.score(X, y) == np.mean(clf.classes_[first.argmax(axis=1)] == y)
    assert (feature_cache.misses, feature_cache.hits) == (views, views)
    clf.set_params(cache_predictions=False)
    np.testing.assert_array_equal(clf.predict_proba(X), uncached)
    assert feature_cache.hits == views  # off: the cache is not read


def test_cache_predictions_is_checked_when_predicting(partial):
    X, y = two_class_images(32, 16, darken=3)
    clf = TransferCNNClassifier(**partial).fit(X, y)
    with pytest.raises(ValueError, match="cache_predictions"):
        clf.set_params(cache_predictions="yes").predict_proba(X)


def test_split_at_block_ends_at_the_named_layer_or_refuses():
    spec = get_backbone("tiny_test_cnn_four_blocks")
    model = build_transfer_model(spec, channels=1, n_classes=2, input_size=16, head=(8,))
    _, pooled = split_at_block(model, spec.block_ends, 1, until=POOLING_LAYER)
    assert pooled.output_shape == model.get_layer(POOLING_LAYER).output.shape
    with pytest.raises(ValueError, match="until must name a layer above the backbone"):
        split_at_block(model, spec.block_ends, 1, until="conv1")


def test_a_spatial_head_trains_on_float16_maps_that_share_the_lower_blocks(partial, tmp_path):
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "long_epochs": 0, "validation_fraction": 0.25, "head": (8,)}
    TransferCNNClassifier(**params).fit(X, y)  # pooling='avg': the maps, then pooled features
    assert (feature_cache.misses, feature_cache.hits) == (4, 0)
    spy = TrainedInputs()
    spatial = TransferCNNClassifier(**params, pooling="spatial").fit(X, y, callbacks=[spy])
    # The same block maps (two hits), then block 2's whole output map, kept as float16.
    assert (feature_cache.misses, feature_cache.hits) == (6, 2)
    assert spy.inputs == [("float32", (None, 4, 4, 16))]  # the last block's map, cast
    split = cached_split(spatial.model_, get_backbone(params["backbone"]), 0, via_blocks=1)
    assert split.dtype == BLOCK_MAP_DTYPE
    reduce = spatial.model_.get_layer("head_reduce")
    assert tuple(reduce.kernel.shape) == (1, 1, 16, skfer.model.SPATIAL_CHANNELS)
    uncached = TransferCNNClassifier(**params, pooling="spatial", cache_features=False).fit(X, y)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(spatial.history_[key], uncached.history_[key], rtol=1e-3)
    # Float16 maps against float32 ones: the probabilities differ by up to about 1e-3 (0.00099
    # through Keras' own pipeline, 0.00102 through skfer's, the same fits).
    np.testing.assert_allclose(spatial.predict_proba(X), uncached.predict_proba(X), atol=2e-3)
    loaded = skfer.load(spatial.save(tmp_path / "spatial.skfer"))
    np.testing.assert_allclose(loaded.predict_proba(X), spatial.predict_proba(X), rtol=1e-6)
    assert spatial.transform(X[:3]).shape == (3, 8)


def test_mirror_augmentation_on_cached_maps_equals_the_uncached_one(partial):
    """flip_augmentation keeps the caches: the mirror images' maps are one more entry, and
    training reads each row from one or the other as the uncached fit mirrors its images."""
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "validation_fraction": 0.25, "flip_augmentation": True}
    cached = TransferCNNClassifier(**params).fit(X, y)
    # Maps and pooled features of the training images, their mirror images and the
    # validation images; the long phase reuses the maps of both training views.
    assert (feature_cache.misses, feature_cache.hits) == (6, 3)
    uncached = TransferCNNClassifier(**params, cache_features=False).fit(X, y)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(cached.history_[key], uncached.history_[key], rtol=1e-4)
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-4)
    plain = TransferCNNClassifier(**{**params, "flip_augmentation": False}).fit(X, y)
    assert not np.allclose(plain.history_["loss"], cached.history_["loss"])


def test_mirror_augmentation_and_augmentation_are_not_combined(partial):
    X, y = two_class_images(32, 16, darken=3)
    clf = TransferCNNClassifier(**partial, augmentation=True, flip_augmentation=True)
    with pytest.raises(ValueError, match="augmentation=True already mirrors"):
        clf.fit(X, y)


def test_feature_mixup_mixes_the_cached_inputs_and_keeps_the_cache(partial, monkeypatch):
    """Manifold mixup at the cache boundary: each phase's batches of cached features (short)
    or block maps (long) are mixed, the backbone still runs once per image set, and a seed
    gives the same fit twice."""
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "validation_fraction": 0.25, "feature_mixup_alpha": 0.4}
    mixed_shapes = []
    mixup = skfer.training.mixup

    def spy(x, y, alpha, rng):
        mixed_shapes.append((x.shape[1:], y.shape[1:], alpha))
        return mixup(x, y, alpha, rng)

    monkeypatch.setattr(skfer.training, "mixup", spy)
    mixed = TransferCNNClassifier(**params).fit(X, y)
    assert (feature_cache.misses, feature_cache.hits) == (4, 2)  # as without mixup
    pooled, maps = (16,), (8, 8, 8)  # the tiny CNN's pooled features; conv1's maps
    assert set(mixed_shapes) == {(pooled, (2,), 0.4), (maps, (2,), 0.4)}
    assert mixed.history_["phase"] == ["short"] * 2 + ["long"] * 3
    again = TransferCNNClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(mixed.history_["loss"], again.history_["loss"])
    plain = TransferCNNClassifier(**{**params, "feature_mixup_alpha": 0.0}).fit(X, y)
    assert not np.allclose(plain.history_["loss"], mixed.history_["loss"])


@pytest.mark.parametrize(
    "change, received",
    [
        ({"cache_features": False}, "cache_features=False"),
        ({"augmentation": True}, "augmentation=True"),
        ({"mixup_alpha": 0.2}, "mixup_alpha=0.2"),
        ({"unfreeze_blocks": None}, "unfreeze_blocks=None (every block"),
    ],
)
def test_feature_mixup_needs_cached_inputs_in_every_phase(partial, change, received):
    X, y = two_class_images(32, 16, darken=3)
    clf = TransferCNNClassifier(**{**partial, "feature_mixup_alpha": 0.4, **change})
    with pytest.raises(ValueError, match=re.escape(received)):
        clf.fit(X, y)
    assert feature_cache.misses == 0  # refused before any work


def test_feature_mixup_without_a_long_phase_needs_no_block_split(partial):
    X, y = two_class_images(32, 16, darken=3)
    params = {**partial, "unfreeze_blocks": None, "long_epochs": 0, "feature_mixup_alpha": 0.4}
    assert TransferCNNClassifier(**params).fit(X, y).history_["phase"] == ["short"] * 2


def test_the_feature_batch_size_sets_the_cache_pass_and_not_what_it_stores(partial, monkeypatch):
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "batch_size": 16, "validation_fraction": 0.25, "cache_predictions": True}
    reference = TransferCNNClassifier(**params).fit(X, y).predict_proba(X)
    feature_cache.clear()
    batch_sizes = []
    compute = FeatureCache.features

    def spy(self, model, images, **kwargs):
        batch_sizes.append(kwargs["batch_size"])
        return compute(self, model, images, **kwargs)

    monkeypatch.setattr(FeatureCache, "features", spy)
    clf = TransferCNNClassifier(**params, feature_batch_size=8).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference, atol=1e-5)
    assert batch_sizes and set(batch_sizes) == {8}


def test_the_feature_batch_size_is_validated(partial):
    X, y = two_class_images(16, 16, darken=3)
    with pytest.raises(ValueError, match="feature_batch_size"):
        TransferCNNClassifier(**partial, feature_batch_size=0).fit(X, y)


def test_maps_kept_on_disk_train_and_predict_as_maps_in_memory(partial, monkeypatch):
    """With every cached array past the cache's spill size, the maps and features live in
    DiskArrays read by the batch; training (mirrored views, mixed maps, validation) and the
    cached prediction read the same values as from memory."""
    X, y = two_class_images(96, 16, darken=3)
    params = {**partial, "validation_fraction": 0.25, "flip_augmentation": True,
              "feature_mixup_alpha": 0.2, "test_time_flip": True}  # fmt: skip
    in_memory = TransferCNNClassifier(**params).fit(X, y)
    expected = in_memory.predict_proba_cached(X)
    feature_cache.clear()
    monkeypatch.setattr(feature_cache, "spill_bytes", 1)
    on_disk = TransferCNNClassifier(**params).fit(X, y)
    assert feature_cache.disk_bytes == feature_cache.nbytes > 0
    assert on_disk.history_ == in_memory.history_
    np.testing.assert_array_equal(on_disk.predict_proba_cached(X), expected)
