"""The stacked ensemble saved to one file without pickle, and loaded back (tiny backbone)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import skfer
from skfer import OneVsAllExperts, TransferCNNClassifier
from skfer.ensemble import FERStackingClassifier, make_fer_ensemble
from skfer.errors import DataFileError
from skfer.experts import ClassExpert
from skfer.persistence import save


def three_class_images(n: int, size: int = 16, *, seed: int = 0):
    """``n`` random gray images labelled angry, happy and sad in turn: happy ones have their
    top half divided by 3, sad ones their bottom half, so a small CNN tells them apart."""
    rng = np.random.default_rng(seed)
    y = np.array(["angry", "happy", "sad"])[np.arange(n) % 3]
    X = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    X[y == "happy", : size // 2] //= 3
    X[y == "sad", size // 2 :] //= 3
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """A stack of a base model, experts for happy and sad and a second base model, fitted on
    held-out images; and images to predict."""
    from conftest import TINY

    X, y = three_class_images(96)
    held_out = three_class_images(60, seed=1)
    base = TransferCNNClassifier(**TINY).fit(X, y)
    expert_template = TransferCNNClassifier(**{**TINY, "long_epochs": 0})
    experts = OneVsAllExperts(expert_template, classes=["happy", "sad"]).fit(X, y)
    other = TransferCNNClassifier(**{**TINY, "random_state": 1}).fit(X, y)
    stack = make_fer_ensemble(
        base, experts, others=[("seed1", other)], hidden_layer_sizes=(8, 4), cv=3, random_state=0
    ).fit(*held_out)
    X_test, _ = three_class_images(30, seed=2)
    return stack, held_out, X_test


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    stack, _, _ = fitted
    return save(stack, tmp_path_factory.mktemp("ensemble") / "models" / "ensemble.skfer")


def test_loaded_stack_predicts_exactly_as_the_saved_one(fitted, saved):
    stack, _, X_test = fitted
    loaded = skfer.load(saved)
    assert type(loaded) is FERStackingClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X_test), stack.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), stack.predict(X_test))
    np.testing.assert_array_equal(loaded.transform(X_test), stack.transform(X_test))
    assert loaded.classes_.dtype == stack.classes_.dtype
    assert loaded.classes_.tolist() == ["angry", "happy", "sad"]
    names = ["base", "expert_happy", "expert_sad", "model_seed1"]
    assert list(loaded.named_estimators_) == names == [name for name, _ in loaded.estimators]
    assert loaded.stack_method_ == stack.stack_method_
    assert loaded.image_shape_ == stack.image_shape_ == (16, 16, 1)


def test_loaded_parts_keep_their_parameters_and_fitted_state(fitted, saved):
    stack, _, _ = fitted
    loaded = skfer.load(saved)
    scalar_params = ("cv", "stack_method", "n_jobs", "passthrough", "verbose")
    assert [loaded.get_params()[k] for k in scalar_params] == [
        stack.get_params()[k] for k in scalar_params
    ]
    for name in ("expert_happy", "expert_sad"):
        assert isinstance(loaded.named_estimators_[name], FrozenEstimator)
        original = stack.named_estimators_[name].estimator
        restored = loaded.named_estimators_[name].estimator
        assert type(restored) is ClassExpert
        for attribute in ("positive_class", "class_weight", "stopping_metric"):
            assert getattr(restored, attribute) == getattr(original, attribute)
        np.testing.assert_array_equal(restored.classes_, original.classes_)
        assert restored.estimator.get_params() == original.estimator.get_params()
        assert restored.estimator_.get_params() == original.estimator_.get_params()
    mlp, restored_mlp = stack.final_estimator_, loaded.final_estimator_
    assert restored_mlp.get_params() == mlp.get_params()
    assert loaded.final_estimator.get_params() == stack.final_estimator.get_params()
    for attribute in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "loss_curve_"):
        assert getattr(restored_mlp, attribute) == getattr(mlp, attribute)
    for ours, theirs in zip(
        restored_mlp.coefs_ + restored_mlp.intercepts_, mlp.coefs_ + mlp.intercepts_, strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
        assert ours.dtype == theirs.dtype
    assert clone(loaded).get_params().keys() == stack.get_params().keys()


def _entries(archive: zipfile.ZipFile):
    """``(name, bytes)`` of every file in ``archive`` and in the ``.skfer`` files inside it."""
    for name in archive.namelist():
        data = archive.read(name)
        yield name, data
        if name.endswith(".skfer"):
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                yield from ((f"{name}/{entry}", content) for entry, content in _entries(inner))


def test_the_file_holds_no_pickle(saved):
    with zipfile.ZipFile(saved) as archive:
        top = sorted(archive.namelist())
        entries = dict(_entries(archive))
        state = json.loads(archive.read("estimator.json"))
        with np.load(io.BytesIO(archive.read("final_estimator.npz")), allow_pickle=False) as npz:
            assert sorted(npz.files)[:3] == ["classes_", "coefs_0", "coefs_1"]
    assert top == ["estimator.json", "final_estimator.npz"] + [
        f"members/{number}.skfer" for number in range(4)
    ]
    assert [member["type"] for member in state["members"]] == [
        "TransferCNNClassifier",
        "ClassExpert",
        "ClassExpert",
        "TransferCNNClassifier",
    ]
    for name, data in entries.items():
        assert name.endswith((".json", ".npz", ".skfer", ".keras")), name
        assert not data.startswith(b"\x80"), name  # the first byte of every pickle since 2
    members = [name for name in entries if name.count(".skfer/") == 1]
    assert sorted(members) == sorted(
        f"members/{number}.skfer/{entry}"
        for number in range(4)
        for entry in ("estimator.json", "model.keras")
    )


def test_fresh_and_loaded_stacks_classify_the_faces_in_a_photo(fitted, saved):
    from skimage import data

    from skfer.faces import predict_faces

    stack, _, _ = fitted
    photo = data.astronaut()  # one face, found by the detector (tests/test_faces.py)
    (face,) = predict_faces(stack, photo)
    assert set(face["probabilities"]) == {"angry", "happy", "sad"}
    assert predict_faces(skfer.load(saved), photo) == [face]
    with pytest.raises(ValueError, match="needs a fitted classifier with image_shape_"):
        predict_faces(clone(stack), photo)


def test_bad_stacks_are_refused_before_any_file_is_written(fitted, tmp_path):
    stack, (X, y), _ = fitted
    base = stack.named_estimators_["base"].estimator
    flat = X.reshape(len(X), -1)
    logistic = LogisticRegression(max_iter=200)
    bad = [
        (clone(stack), NotFittedError, "not fitted"),
        (
            StackingClassifier([("lr", logistic)], cv=2).fit(flat, y),
            ValueError,
            r"member 'lr' is not a fitted model wrapped in .*prefit=False",
        ),
        (
            StackingClassifier([("lr", FrozenEstimator(clone(logistic).fit(flat, y)))]).fit(
                flat, y
            ),
            ValueError,
            "leave member 'lr' out of the stack.* 'lr' is a LogisticRegression",
        ),
        (
            StackingClassifier(
                [
                    (
                        "x",
                        FrozenEstimator(
                            ClassExpert(logistic, "sad", class_weight=None).fit(flat, y)
                        ),
                    )
                ]
            ).fit(flat, y),
            ValueError,
            "'x' is a ClassExpert of a LogisticRegression",
        ),
        (
            StackingClassifier([("base", FrozenEstimator(base))]).fit(X, y),
            ValueError,
            "final estimator is neither an MLPClassifier, a SeedAveragedMLP nor .*Logistic",
        ),
        (
            make_fer_ensemble(base, cv=StratifiedKFold(2), random_state=0).fit(X, y),
            ValueError,
            "not JSON-serialisable",
        ),
    ]
    for number, (estimator, error, message) in enumerate(bad):
        path = tmp_path / f"{number}.skfer"
        with pytest.raises(error, match=message):
            save(estimator, path)
        assert not path.exists()


def test_a_stack_file_missing_a_member_is_a_clear_error(saved, tmp_path):
    damaged = tmp_path / "damaged.skfer"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            if name != "members/2.skfer":
                target.writestr(name, source.read(name))
    with pytest.raises(DataFileError, match=r"ensemble file without \['members/2.skfer'\]"):
        skfer.load(damaged)


def restacked(fitted, **stacker):
    """The fixture's base model and second base model (no experts) stacked anew on its held-out
    images with the ``make_fer_ensemble`` arguments ``stacker``."""
    mlp_stack, held_out, _ = fitted
    members = mlp_stack.named_estimators_
    return make_fer_ensemble(
        members["base"].estimator,
        others=[("seed1", members["model_seed1"].estimator)],
        cv=3,
        **stacker,
    ).fit(*held_out)


def test_a_logistic_stack_round_trips_exactly_and_differs_from_the_mlp(fitted, tmp_path):
    from sklearn.pipeline import Pipeline

    from skfer.ensemble import LogProbabilities

    mlp_stack, _, X_test = fitted
    stack = restacked(fitted, stacker="logistic")
    final = stack.final_estimator_
    assert isinstance(final, Pipeline) and isinstance(final.steps[0][1], LogProbabilities)
    loaded = skfer.load(save(stack, tmp_path / "logistic.skfer"))
    assert type(loaded.final_estimator_.steps[1][1]) is LogisticRegression
    np.testing.assert_array_equal(loaded.predict_proba(X_test), stack.predict_proba(X_test))
    assert loaded.final_estimator_.steps[1][1].get_params() == final.steps[1][1].get_params()
    assert not np.allclose(stack.predict_proba(X_test), mlp_stack.predict_proba(X_test))


def test_log_probabilities_floors_and_checks_its_parameter():
    from skfer.ensemble import LogProbabilities, make_stacker

    x = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(
        LogProbabilities().fit(x).transform(x), [[np.log(1e-6), np.log(0.5), 0]]
    )
    with pytest.raises(ValueError, match=r"floor must be .* Received: floor=0"):
        LogProbabilities(floor=0).fit(x)
    with pytest.raises(NotFittedError):
        LogProbabilities().transform(x)
    with pytest.raises(
        ValueError, match=r"kind must be one of \('mlp', 'standardized_mlp', 'logistic'\)"
    ):
        make_stacker(kind="svm")


def test_a_seed_averaged_stack_round_trips_exactly(fitted, tmp_path):
    from skfer.ensemble import SeedAveragedMLP

    _, _, X_test = fitted
    stack = restacked(fitted, hidden_layer_sizes=(8, 8), stacker_seeds=3, random_state=0)
    final = stack.final_estimator_
    assert type(final) is SeedAveragedMLP and len(final.estimators_) == 3
    loaded = skfer.load(save(stack, tmp_path / "averaged.skfer"))
    assert type(loaded.final_estimator_) is SeedAveragedMLP
    assert loaded.final_estimator_.get_params() == final.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X_test), stack.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), stack.predict(X_test))


@pytest.mark.parametrize("seeds", [1, 3])
def test_a_standardized_stack_round_trips_exactly(fitted, tmp_path, seeds):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    mlp_stack, held_out, X_test = fitted
    stack = restacked(
        fitted,
        hidden_layer_sizes=(8, 8),
        stacker="standardized_mlp",
        stacker_seeds=seeds,
        random_state=0,
    )
    final = stack.final_estimator_
    assert type(final) is Pipeline and type(final.steps[0][1]) is StandardScaler
    # The MLPs learn standardized inputs: the scaler's mean is the members' mean probability.
    np.testing.assert_allclose(final.steps[0][1].mean_, stack.transform(held_out[0]).mean(axis=0))
    loaded = skfer.load(save(stack, tmp_path / "standardized.skfer"))
    assert [type(step) for _, step in loaded.final_estimator_.steps] == [
        type(step) for _, step in final.steps
    ]
    np.testing.assert_array_equal(loaded.predict_proba(X_test), stack.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), stack.predict(X_test))
    assert not np.allclose(stack.predict_proba(X_test), mlp_stack.predict_proba(X_test))
