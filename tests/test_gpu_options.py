"""What the gpu preset brought: jittable augmentation, the cosine schedule, test-time flip,
shared expert features, backend-dependent compilation and the smoke presets."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import two_class_images

import skfer.backend
from skfer import OneVsAllExperts, TransferCNNClassifier, get_backbone
from skfer.backend import (
    BackendError,
    predict_in_full_batches,
    require_tensorflow,
    resolve_jit_compile,
)
from skfer.cache import feature_cache
from skfer.layers import FaceAugmentation
from skfer.presets import PRESETS, smoke_preset
from skfer.training import warmup_cosine


def _faces(n=8, height=12, width=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 1)).astype(np.uint8)


def test_face_augmentation_is_identity_at_inference_and_float32():
    x = _faces()
    out = keras.ops.convert_to_numpy(FaceAugmentation(seed=0)(x, training=False))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_face_augmentation_mirrors_exactly_when_nothing_else_moves():
    x = _faces(n=32)
    layer = FaceAugmentation(shift=0, rotation=0, zoom=0, seed=1)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    same = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, x, strict=True)]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, x, strict=True)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert 0 < sum(mirrored) < 32  # about half of them


def test_face_augmentation_is_seeded_and_moves_pixels():
    x = _faces(n=16)
    first = keras.ops.convert_to_numpy(FaceAugmentation(seed=3)(x, training=True))
    second = keras.ops.convert_to_numpy(FaceAugmentation(seed=3)(x, training=True))
    other = keras.ops.convert_to_numpy(FaceAugmentation(seed=4)(x, training=True))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)
    assert not np.allclose(first, x)
    assert first.shape == x.shape and 0 <= first.min() and first.max() <= 255


def test_face_augmentation_config_round_trip():
    layer = FaceAugmentation(shift=0.2, rotation=0.1, zoom=0.05, flip=False, seed=7)
    clone = FaceAugmentation.from_config(layer.get_config())
    assert (clone.shift, clone.rotation, clone.zoom, clone.flip, clone.seed) == (
        0.2, 0.1, 0.05, False, 7,
    )  # fmt: skip


def test_warmup_cosine_rises_for_one_epoch_then_decays_to_zero():
    schedule = warmup_cosine(1e-3, steps_per_epoch=10, epochs=5)
    rates = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-3)
    assert rates[2] > rates[3] > rates[4] and rates[4] == pytest.approx(0, abs=1e-9)


def test_cosine_schedule_changes_the_long_phase_and_is_validated(tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    constant = TransferCNNClassifier(**tiny_params).fit(X, y)
    cosine = TransferCNNClassifier(**tiny_params, long_schedule="cosine")
    cosine.fit(X, y)
    assert not np.allclose(constant.predict_proba(X), cosine.predict_proba(X))
    with pytest.raises(ValueError, match="long_schedule"):
        TransferCNNClassifier(**tiny_params, long_schedule="linear").fit(X, y)


def test_test_time_flip_averages_the_image_and_its_mirror(tiny_params):
    X, y = two_class_images(48, 16, darken=3)
    clf = TransferCNNClassifier(**tiny_params, test_time_flip=True).fit(X, y)
    images = X[..., np.newaxis]
    plain = clf.model_.predict(images, verbose=0)
    mirrored = clf.model_.predict(images[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(clf.predict_proba(X), (plain + mirrored) / 2, rtol=1e-6)
    clf.set_params(test_time_flip=False)
    np.testing.assert_allclose(clf.predict_proba(X), plain, rtol=1e-6)


def test_experts_on_one_backbone_compute_its_features_once(tiny_params):
    X, y = two_class_images(60, 16, darken=3)
    y = np.arange(60) % 3
    template = TransferCNNClassifier(**{**tiny_params, "long_epochs": 0})
    experts = OneVsAllExperts(template).fit(X, y)
    feature_cache.clear()
    shared = [expert.estimator_.predict_proba_cached(X) for expert in experts.experts_]
    assert (feature_cache.misses, feature_cache.hits) == (1, 2)
    for expert, proba in zip(experts.experts_, shared, strict=True):
        np.testing.assert_allclose(proba, expert.estimator_.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert (feature_cache.misses, feature_cache.hits) == (1, 2)  # predict_proba: not consulted
    experts.expert_scores(X)
    assert (feature_cache.misses, feature_cache.hits) == (1, 5)  # the experts read the cache


def test_jit_compile_auto_follows_the_backend():
    assert resolve_jit_compile(True) is True and resolve_jit_compile(False) is False
    expected = True if keras.backend.backend() == "jax" else "auto"
    assert resolve_jit_compile("auto") == expected


def test_padded_prediction_gives_the_same_rows(monkeypatch):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    seen = []
    plain_predict = model.predict
    monkeypatch.setattr(
        model, "predict", lambda a, **k: seen.append(len(a)) or plain_predict(a, **k)
    )
    expected = keras.ops.convert_to_numpy(model(x))
    monkeypatch.setattr(skfer.backend, "compiles_per_batch_shape", lambda: True)
    padded = predict_in_full_batches(model, x, 4)
    assert seen == [12]  # three full batches
    np.testing.assert_allclose(padded, expected, rtol=1e-6)
    assert predict_in_full_batches(model, x[:8], 4).shape == (8, 2)  # nothing to pad


def test_tensorflow_only_features_say_so_elsewhere(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BackendError, match="needs Keras' TensorFlow backend.*KERAS_BACKEND"):
        require_tensorflow("distribution='mirrored'")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_smoke_presets_keep_the_plan_and_shrink_its_cost(name):
    plan, smoke = PRESETS[name], smoke_preset(PRESETS[name])
    assert [b.label for b in smoke.base_models] == [b.label for b in plan.base_models]
    for base, small in zip(plan.base_models, smoke.base_models, strict=True):
        assert small.params["backbone"] == base.params["backbone"]
        assert small.params.get("weights", "default") == base.params.get("weights", "default")
        minimum = get_backbone(base.params["backbone"]).min_input_size
        assert small.params["input_size"] == max(
            minimum, min(48, base.params.get("input_size") or 48)
        )
        assert small.params["short_epochs"] == small.params["long_epochs"] == 1
    assert smoke.train_per_class * smoke.stack_fraction >= 5  # 5-fold member selection


def test_gpu_preset_meets_the_issue_floor():
    plan = PRESETS["gpu"]
    face = plan.base_models[0].params
    assert face["backbone"] == "mobilenet_vggface2" and face["input_size"] == 224
    for base in plan.base_models:
        assert base.params["input_size"] >= 128 and base.params["batch_size"] >= 128


def test_predicting_unlike_the_training_images_warns(tiny_params):
    X, y = two_class_images(32, 16, darken=3)
    clf = TransferCNNClassifier(**tiny_params).fit(X, y)
    with pytest.warns(UserWarning, match="fitted on 16x16 images"):
        clf.predict(two_class_images(4, 20, darken=3)[0])
    with pytest.warns(UserWarning, match="floats within 0..1"):
        clf.predict(X[:4] / 255.0)
