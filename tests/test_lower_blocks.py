"""A backbone's lower blocks alone (``lower_blocks``) and the 2 x 2 grid pooling."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from skfer import TransferCNNClassifier, get_backbone
from skfer.backbones import lower_blocks, save_weights_by_layer_name
from skfer.layers import GridAveragePooling2D
from skfer.model import POOLING_LAYER


def test_lower_blocks_end_at_the_named_block_with_the_whole_networks_weights(tmp_path):
    whole = get_backbone("mobilenet")
    full = whole.build(32)
    rng = np.random.default_rng(0)
    full.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in full.get_weights()])
    path = save_weights_by_layer_name(full, tmp_path / "whole.h5")

    spec = lower_blocks(whole, "conv_pw_5_relu", "mobilenet_to_block5")
    lower = spec.build(32, path)

    assert lower.layers[-1].name == "conv_pw_5_relu"
    assert spec.block_ends == whole.block_ends[:6]
    assert "(5 of 13 blocks)" in spec.description
    for layer in lower.layers[1:]:  # the input layer has no weights
        for a, b in zip(layer.get_weights(), full.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    below = keras.Model(full.input, full.get_layer("conv_pw_5_relu").output)
    np.testing.assert_allclose(lower.predict(images, verbose=0), below.predict(images, verbose=0))


@pytest.mark.parametrize("block_end", ["conv_pw_13_relu", "conv_pw_5", "nope"])
def test_lower_blocks_refuse_the_top_block_and_layers_that_end_no_block(block_end):
    with pytest.raises(ValueError, match=rf"below its top one.*top_block_end='{block_end}'"):
        lower_blocks(get_backbone("mobilenet"), block_end, "cut")


def test_the_face_models_lower_nine_blocks_are_registered():
    spec = get_backbone("mobilenet_vggface2_block9")
    whole = get_backbone("mobilenet_vggface2")
    assert spec.top_layer == "conv_pw_9_relu" and spec.block_ends == whole.block_ends[:10]
    assert spec.weights == whole.weights and spec.folded_batchnorm


def test_grid_pooling_averages_each_quarter_of_the_map():
    maps = np.arange(2 * 5 * 6 * 3, dtype="float32").reshape(2, 5, 6, 3)
    pooled = keras.ops.convert_to_numpy(GridAveragePooling2D(2)(maps))

    # The odd last row is left out: cells of 2 rows x 3 columns.
    expected = np.stack(
        [maps[:, r : r + 2, c : c + 3].mean(axis=(1, 2)) for r in (0, 2) for c in (0, 3)], axis=1
    ).reshape(2, 12)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert GridAveragePooling2D(2).compute_output_shape((None, 5, 6, 3)) == (None, 12)


def test_grid_pooling_refuses_a_map_smaller_than_its_grid():
    with pytest.raises(ValueError, match=r"at least 2 x 2.*larger input_size.*\(None, 1, 1, 4\)"):
        GridAveragePooling2D(2)(keras.Input((1, 1, 4)))


@pytest.mark.parametrize("head_batchnorm", [False, True])
def test_a_grid_pooled_classifier_trains_on_cached_features_and_round_trips(
    tiny_params, tmp_path, head_batchnorm
):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (24, 16, 16)).astype(np.uint8)
    y = np.arange(24) % 3
    params = {**tiny_params, "pooling": "grid", "head_batchnorm": head_batchnorm}
    params["long_epochs"] = 0
    cached = TransferCNNClassifier(**params).fit(X, y)
    uncached = TransferCNNClassifier(**params, cache_features=False).fit(X, y)

    pooling = cached.model_.get_layer(POOLING_LAYER)
    assert isinstance(pooling, GridAveragePooling2D) and pooling.output.shape == (None, 4 * 16)
    names = [layer.name for layer in cached.model_.layers]
    assert ("head_batchnorm" in names) is head_batchnorm
    if head_batchnorm:  # right after the pooling, and trained: its statistics moved
        assert names.index("head_batchnorm") == names.index(POOLING_LAYER) + 1
        moving_mean = cached.model_.get_layer("head_batchnorm").moving_mean
        assert np.abs(keras.ops.convert_to_numpy(moving_mean)).max() > 0
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-5)
    path = tmp_path / "grid.keras"
    cached.model_.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), cached.predict_proba(X), rtol=1e-5)
