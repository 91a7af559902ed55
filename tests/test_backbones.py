"""The backbone registry: building, weight files, downloads (from file:// URLs only)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from weightfiles import write_keras2_weights

from skfer import get_backbone, list_backbones
from skfer.backbones import (
    VGGFACE_MODE,
    WeightsDownloadError,
    WeightsFileError,
    fetch_weights,
    load_weights_by_layer_name,
)

EXPECTED = {
    "inception_v3": 2048,
    "mobilenet": 256,
    "mobilenet_face": 256,
    "mobilenet_vggface2": 1024,
    "mobilenet_vggface2_block9": 512,
    "resnet50": 2048,
    "vgg16": 512,
    "vggface": 512,
}


def test_registry_lists_the_study_backbones_and_the_cpu_ones():
    assert set(EXPECTED) <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match=r"choose one of .*vggface.*Received: backbone='vgg17'"):
        get_backbone("vgg17")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_backbone_builds_randomly_initialised_at_a_small_input(name):
    spec = get_backbone(name)
    size = max(spec.min_input_size, 64)
    model = spec.build(size, None)
    batch = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype("float32")
    features = model.predict(batch, verbose=0)
    assert features.ndim == 4 and features.shape[0] == 2 and features.shape[-1] == EXPECTED[name]
    layer_names = {layer.name for layer in model.layers}
    assert set(spec.block_ends) <= layer_names


def test_input_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 75 pixels.*Received: input_size=48"):
        get_backbone("inception_v3").build(48)


def test_vggface_has_the_keras_vggface_layer_names_and_preprocessing():
    model = get_backbone("vggface").build(32)
    names = [layer.name for layer in model.layers if layer.weights]
    assert names == [
        f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)
    ]
    assert [f"pool{b}" for b in range(1, 6)] == [
        layer.name for layer in model.layers if "pool" in layer.name
    ]
    assert model.count_params() == 14_714_688
    assert VGGFACE_MODE.bgr and VGGFACE_MODE.mean == (93.5940, 104.7624, 129.1863)


def test_vggface_loads_a_file_in_the_keras_vggface_layout(tmp_path):
    spec = get_backbone("vggface")
    path = tmp_path / "vggface_notop.h5"
    written = write_keras2_weights(spec.build(32), path)
    model = spec.build(48, path)  # weights do not depend on the input size
    for name, arrays in written.items():
        for loaded, stored in zip(model.get_layer(name).get_weights(), arrays, strict=False):
            np.testing.assert_array_equal(loaded, stored)


def test_wrong_shapes_and_missing_layers_are_rejected(tmp_path):
    spec = get_backbone("vggface")
    wrong = tmp_path / "wrong.h5"
    write_keras2_weights(spec.build(32), wrong, reshape_layer="conv3_2")
    with pytest.raises(WeightsFileError, match=r"conv3_2.*has shapes .*expected"):
        spec.build(32, wrong)
    missing = tmp_path / "missing.h5"
    write_keras2_weights(spec.build(32), missing, drop_layers=("conv5_3",))
    with pytest.raises(WeightsFileError, match="'conv5_3' missing"):
        spec.build(32, missing)


def test_weight_paths_that_cannot_be_loaded_say_why(tmp_path):
    spec = get_backbone("mobilenet")
    with pytest.raises(WeightsFileError, match="path to an existing weight file"):
        spec.build(32, tmp_path / "absent.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not weights")
    with pytest.raises(WeightsFileError, match="not an HDF5 file"):
        spec.build(32, text)


def test_a_file_named_like_a_published_one_must_match_its_hash(tmp_path):
    spec = get_backbone("mobilenet")
    impostor = tmp_path / spec.weights["imagenet"].file_name
    write_keras2_weights(spec.build(32), impostor)
    with pytest.raises(WeightsFileError, match="sha256 differs from the published dbdb03"):
        spec.build(32, impostor)


def test_shared_imagenet_mobilenet_loads_and_passes_its_hash(mobilenet_imagenet_weights):
    spec = get_backbone("mobilenet")
    model = spec.build(64, mobilenet_imagenet_weights)
    assert not np.allclose(
        model.get_layer("conv1").get_weights()[0],
        spec.build(64).get_layer("conv1").get_weights()[0],
    )


def test_face_backbone_is_filled_from_the_detector_file(
    mobilenet_face_weights, mobilenet_imagenet_weights
):
    face = get_backbone("mobilenet_face").build(64, mobilenet_face_weights)
    imagenet = get_backbone("mobilenet").build(64, mobilenet_imagenet_weights)
    kernel = "conv_pw_13"
    assert not np.allclose(
        face.get_layer(kernel).get_weights()[0], imagenet.get_layer(kernel).get_weights()[0]
    )
    assert get_backbone("mobilenet_face").preprocessing.bgr


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_hash_and_caches(tmp_path):
    model = get_backbone("mobilenet").build(32)
    published = tmp_path / "published" / "weights.h5"
    published.parent.mkdir()
    write_keras2_weights(model, published)
    source = dataclasses.replace(
        get_backbone("mobilenet").weights["imagenet"],
        url=published.as_uri(),
        file_name="weights.h5",
        file_hash=_sha256(published),
    )
    cache = tmp_path / "cache"
    path = fetch_weights(source, cache_dir=cache)
    assert path.read_bytes() == published.read_bytes() and path.parent == cache / "models"
    load_weights_by_layer_name(get_backbone("mobilenet").build(32), path, source=source)
    published.unlink()  # a second call must not download again
    assert fetch_weights(source, cache_dir=cache) == path

    bad = dataclasses.replace(source, file_name="other.h5", url=path.as_uri(), file_hash="0" * 64)
    with pytest.raises(WeightsFileError, match="hash does not match"):
        fetch_weights(bad, cache_dir=cache)


def test_failed_download_names_the_url_and_the_offline_fix(tmp_path):
    source = dataclasses.replace(
        get_backbone("vggface").weights["vggface"], url=(tmp_path / "gone.h5").as_uri()
    )
    with pytest.raises(
        WeightsDownloadError,
        match=r"Could not download weights from file://.*gone\.h5.*weights=PATH",
    ):
        fetch_weights(source, cache_dir=tmp_path / "cache")


def test_saved_backbone_weights_load_back(tmp_path):
    from skfer.backbones import save_weights_by_layer_name

    spec = get_backbone("mobilenet")
    original = spec.build(32)
    original.get_layer("conv1").set_weights([np.full((3, 3, 3, 8), 0.5, dtype="float32")])
    path = save_weights_by_layer_name(original, tmp_path / "finetuned.h5")
    restored = spec.build(48, path)
    for a, b in zip(original.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
