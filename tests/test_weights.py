"""Weight files in TensorFlow.js graph-model form: reading, folding, checks and downloads."""

from __future__ import annotations

import dataclasses
import hashlib

import keras
import numpy as np
import pytest
from conftest import shared_path
from weightfiles import write_folded_tfjs_model

from skfer import get_backbone
from skfer.weights import (
    WeightsDownloadError,
    WeightsFileError,
    fetch_weights,
    load_tfjs_weights,
    read_tfjs_tensors,
)


def _folded_net(input_shape=(16, 16, 3)):
    """Conv, BatchNorm without scale, depthwise conv, BatchNorm: MobileNet's layer kinds."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, use_bias=False, name="conv_dw_1")(x)
    x = keras.layers.BatchNormalization(name="conv_dw_1_bn")(x)
    return keras.Model(inputs, x, name="folded")


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_graph_model_loads_into_keras_layers_with_batchnorm_folded(tmp_path):
    model = _folded_net()
    path, expected = write_folded_tfjs_model(model, tmp_path)
    load_tfjs_weights(model, path)
    for name, arrays in expected.items():
        for actual, wanted in zip(model.get_layer(name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(actual, wanted)
    # With mean 0 and variance 1 - eps, BatchNorm applies exactly gamma * x + beta.
    bn = model.get_layer("conv1_bn")
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype("float32")
    gamma, beta = expected["conv1_bn"][:2]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn(x, training=False)), x * gamma + beta, rtol=1e-5, atol=1e-5
    )


def test_read_tfjs_tensors_dequantises_and_keeps_int_constants(tmp_path):
    path, expected = write_folded_tfjs_model(_folded_net(), tmp_path)
    tensors = read_tfjs_tensors(path)
    assert tensors["conv1/convolution/merged_input"].dtype == np.float32
    np.testing.assert_array_equal(tensors["conv_dw_1/depthwise_kernel"], expected["conv_dw_1"][0])
    assert tensors["relu/Const"].dtype == np.int32 and int(tensors["relu/Const"]) == 6


def test_missing_tensor_is_an_error_not_a_silent_skip(tmp_path):
    model = _folded_net()
    path, _ = write_folded_tfjs_model(model, tmp_path, drop_tensors={"conv_dw_1/depthwise_kernel"})
    with pytest.raises(
        WeightsFileError, match=r"'conv_dw_1' lacks tensor conv_dw_1/depthwise_kernel"
    ):
        load_tfjs_weights(model, path)


def test_wrong_architecture_names_the_shapes(tmp_path):
    path, _ = write_folded_tfjs_model(_folded_net(), tmp_path)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv1")(inputs)
    other = keras.Model(inputs, x)
    with pytest.raises(WeightsFileError, match=r"'conv1' has shapes .*expected"):
        load_tfjs_weights(other, path)


def test_missing_or_truncated_shard_and_bad_json_are_clear_errors(tmp_path):
    model = _folded_net()
    path, _ = write_folded_tfjs_model(model, tmp_path)
    shard = tmp_path / "model.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:20])
    with pytest.raises(WeightsFileError, match="truncated"):
        load_tfjs_weights(model, path)
    shard.unlink()
    with pytest.raises(WeightsFileError, match="must lie beside it"):
        load_tfjs_weights(model, path)
    path.write_text("{not json")
    with pytest.raises(WeightsFileError, match="not a TensorFlow.js graph model"):
        load_tfjs_weights(model, path)


def test_fetch_downloads_the_json_and_its_shard_and_checks_both(tmp_path):
    source_dir = tmp_path / "published"
    source_dir.mkdir()
    path, _ = write_folded_tfjs_model(_folded_net(), source_dir)
    spec = get_backbone("mobilenet_vggface2").weights["vggface2"]
    shard = dataclasses.replace(
        spec.companions[0],
        url=(source_dir / "model.bin").as_uri(),
        file_name="model.bin",
        file_hash=_sha256(source_dir / "model.bin"),
    )
    source = dataclasses.replace(
        spec, url=path.as_uri(), file_name="model.json", file_hash=_sha256(path),
        companions=(shard,),
    )  # fmt: skip
    fetched = fetch_weights(source, cache_dir=tmp_path / "cache")
    assert fetched.read_bytes() == path.read_bytes()
    assert (fetched.parent / "model.bin").read_bytes() == (source_dir / "model.bin").read_bytes()
    # A shard changed after download fails its hash on load.
    (fetched.parent / "model.bin").write_bytes(b"\0" * 10)
    with pytest.raises(WeightsFileError, match="differs from the published"):
        load_tfjs_weights(_folded_net(), fetched, source=source)


def test_fetch_offline_says_how_to_use_a_local_file(tmp_path):
    spec = get_backbone("mobilenet_vggface2").weights["vggface2"]
    missing = dataclasses.replace(
        spec, url=(tmp_path / "gone.json").as_uri(), file_name="gone.json", companions=()
    )
    with pytest.raises(WeightsDownloadError, match="weights=PATH"):
        fetch_weights(missing, cache_dir=tmp_path / "cache")


def test_vggface2_mobilenet_matches_the_published_check_values():
    """The README's check: the astronaut image gives the graph's own pooled features."""
    skimage = pytest.importorskip("skimage")
    from skimage.transform import resize

    path = shared_path("weights/hse_faceres_vggface2/faceres.json")
    spec = get_backbone("mobilenet_vggface2")
    backbone = spec.build(224, path)
    assert backbone.count_params() == 3_228_864
    image = resize(skimage.data.astronaut(), (224, 224), anti_aliasing=True, preserve_range=True)
    x = keras.applications.imagenet_utils.preprocess_input(
        image[np.newaxis].astype("float32"), mode="caffe"
    )
    features = keras.ops.convert_to_numpy(keras.ops.mean(backbone(x), axis=(1, 2)))[0]
    assert features.shape == (1024,)
    assert features.sum() == pytest.approx(105.3210, abs=2e-3)
    np.testing.assert_allclose(features[:4], [0.4682, 0.1443, 0.0, 0.0], atol=1e-3)
    assert int(features.argmax()) == 495
