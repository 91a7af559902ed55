"""The Keras graph: registered layers, frozen BatchNorm statistics, .keras files, two phases."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import two_class_images

from skfer import TransferCNNClassifier, get_backbone
from skfer.layers import BackboneInput, BackbonePreprocessing
from skfer.model import BACKBONE_LAYER, build_transfer_model, set_backbone_trainable
from skfer.training import Phase, TrainingSettings, train


def _images(n=64, size=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    X[y == 1, : size // 2] //= 4
    X[y == 2, size // 2 :] //= 4
    return X, y


def test_backbone_input_casts_replicates_and_resizes():
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    out = keras.ops.convert_to_numpy(BackboneInput(8)(gray))
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    same = keras.ops.convert_to_numpy(BackboneInput(4)(gray))
    np.testing.assert_array_equal(same[..., 1], gray[..., 0].astype(np.float32))


def test_vggface_preprocessing_flips_to_bgr_and_subtracts_the_vggface_mean():
    spec = get_backbone("vggface").preprocessing
    layer = BackbonePreprocessing(spec.bgr, spec.scale, spec.mean, spec.std)
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], dtype=np.float32)
    out = keras.ops.convert_to_numpy(layer(rgb))[0, 0, 0]
    np.testing.assert_allclose(out, [30 - 93.5940, 20 - 104.7624, 10 - 129.1863], rtol=1e-6)


@pytest.mark.parametrize("batchnorm_training", [False, True])
def test_long_phase_keeps_batchnorm_statistics_unless_asked(tiny_params, batchnorm_training):
    X, y = _images()
    params = {**tiny_params, "short_epochs": 1, "long_epochs": 2}
    reference = build_transfer_model(
        get_backbone("tiny_test_cnn"), channels=1, n_classes=3, input_size=16
    )
    before = reference.get_layer(BACKBONE_LAYER).backbone.get_layer("conv1_bn").get_weights()
    clf = TransferCNNClassifier(**params, batchnorm_training=batchnorm_training).fit(X, y)
    bn = clf.model_.get_layer(BACKBONE_LAYER).backbone.get_layer("conv1_bn")
    gamma, _, moving_mean, moving_variance = bn.get_weights()
    statistics_kept = np.allclose(moving_mean, before[2]) and np.allclose(
        moving_variance, before[3]
    )
    assert statistics_kept != batchnorm_training
    assert not np.allclose(gamma, before[0])  # gamma and beta still learn in the long phase


def test_unfreezing_the_top_blocks_only():
    model = build_transfer_model(get_backbone("mobilenet"), channels=1, n_classes=7, input_size=32)
    set_backbone_trainable(model, get_backbone("mobilenet").block_ends, 2)
    trainable = [
        layer.name
        for layer in model.get_layer(BACKBONE_LAYER).backbone.layers
        if layer.trainable and layer.weights
    ]
    assert trainable and all(
        name.startswith(("conv_dw_13", "conv_pw_13", "conv_dw_12", "conv_pw_12"))
        for name in trainable
    )
    set_backbone_trainable(model, get_backbone("mobilenet").block_ends, None)
    assert all(layer.trainable for layer in model.get_layer(BACKBONE_LAYER).backbone.layers)


def test_keras_file_round_trip_in_safe_mode(tiny_params, tmp_path):
    X, y = _images()
    clf = TransferCNNClassifier(**{**tiny_params, "augmentation": True}).fit(X, y)
    path = tmp_path / "model.keras"
    clf.model_.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), clf.predict_proba(X), rtol=1e-6)
    assert not any(type(layer).__name__ == "Lambda" for layer in loaded.layers)


def _snapshot(model):
    backbone = model.get_layer(BACKBONE_LAYER).backbone
    head = model.get_layer("predictions")
    return [w.copy() for w in backbone.get_weights()], [w.copy() for w in head.get_weights()]


@pytest.mark.slow
def test_both_phases_on_real_fer2013(fer2013_subset, mobilenet_imagenet_weights):
    X, y, X_test, y_test = fer2013_subset
    spec = get_backbone("mobilenet")
    model = build_transfer_model(
        spec, channels=1, n_classes=7, input_size=32, weights=mobilenet_imagenet_weights,
        head=(64,),
    )  # fmt: skip
    settings = TrainingSettings(batch_size=32, patience=None, verbose=0)
    snapshots = [_snapshot(model)]
    history = []
    for phase in (Phase("short", 2, 1e-3, 0), Phase("long", 2, 1e-4, None)):
        result = train(model, spec, [phase], (X, y), (X_test, y_test), settings=settings, seed=0)
        snapshots.append(_snapshot(model))
        history += result.history["phase"]
        assert len(result.history["val_accuracy"]) == 2
    (backbone0, head0), (backbone1, head1), (backbone2, head2) = snapshots
    unchanged = [np.array_equal(a, b) for a, b in zip(backbone0, backbone1, strict=True)]
    assert all(unchanged), "phase 1 moved the backbone"
    assert not all(np.array_equal(a, b) for a, b in zip(backbone1, backbone2, strict=True)), (
        "phase 2 froze it"
    )
    assert not np.array_equal(head0[0], head1[0]) and not np.array_equal(head1[0], head2[0])
    assert history == ["short", "short", "long", "long"]
    proba = keras.ops.convert_to_numpy(model.predict(X_test, verbose=0))
    assert proba.shape == (len(X_test), 7) and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_a_long_phase_that_never_beats_the_short_one_is_undone(tiny_params):
    X, y = two_class_images(96, 16, darken=4)
    params = {**tiny_params, "short_epochs": 4, "validation_fraction": 0.25, "patience": 2}
    short_only = TransferCNNClassifier(**{**params, "long_epochs": 0}).fit(X, y)
    # A huge learning rate wrecks the network in the long phase.
    wrecked = TransferCNNClassifier(**{**params, "long_epochs": 2, "long_learning_rate": 1e3})
    wrecked.fit(X, y)
    short_best = max(wrecked.history_["val_accuracy"][: wrecked.long_phase_start_])
    assert max(wrecked.history_["val_accuracy"][wrecked.long_phase_start_ :]) <= short_best
    np.testing.assert_allclose(wrecked.predict_proba(X), short_only.predict_proba(X), atol=1e-6)


def test_without_early_stopping_the_long_phase_weights_stay(tiny_params):
    X, y = two_class_images(96, 16, darken=4)
    params = {**tiny_params, "short_epochs": 4, "validation_fraction": 0.25, "patience": None}
    short_only = TransferCNNClassifier(**{**params, "long_epochs": 0}).fit(X, y)
    wrecked = TransferCNNClassifier(**{**params, "long_epochs": 2, "long_learning_rate": 1e3})
    wrecked.fit(X, y)
    assert not np.allclose(wrecked.predict_proba(X), short_only.predict_proba(X), atol=1e-6)


def test_unfreeze_blocks_trains_only_the_top_blocks(tiny_params):
    X, y = _images()
    kernels = []

    class Kernels(keras.callbacks.Callback):
        def _record(self):
            wrapper = self.model.get_layer(BACKBONE_LAYER)
            if wrapper.trainable:  # the long phase
                backbone = wrapper.backbone
                kernels.append([backbone.get_layer(n).get_weights()[0] for n in ("conv1", "conv2")])

        def on_train_begin(self, logs=None):
            self._record()

        def on_train_end(self, logs=None):
            self._record()

    # The whole model trains in both phases (on cached block maps: test_partial_cache.py).
    params = {**tiny_params, "short_epochs": 1, "long_epochs": 2, "unfreeze_blocks": 1,
              "cache_features": False}  # fmt: skip
    TransferCNNClassifier(**params).fit(X, y, callbacks=[Kernels()])
    (conv1_before, conv2_before), (conv1_after, conv2_after) = kernels
    assert np.array_equal(conv1_before, conv1_after)  # below the top block: frozen
    assert not np.array_equal(conv2_before, conv2_after)  # the top block learned
