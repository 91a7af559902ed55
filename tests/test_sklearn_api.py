"""TransferCNNClassifier in scikit-learn: clone, search, cross-validation, pipelines, pickling."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
from conftest import TINY
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfer import TransferCNNClassifier


def _blobs(n=96, size=12, seed=0):
    """Two kinds of images a CNN separates at once: bright top half vs bright bottom half."""
    rng = np.random.default_rng(seed)
    y = np.array(["frown", "smile"])[np.arange(n) % 2]
    X = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    half = size // 2
    X[y == "smile", :half] += 180
    X[y == "frown", half:] += 180
    return X, y


def test_is_a_classifier_with_explicit_tags():
    clf = TransferCNNClassifier()
    assert is_classifier(clf)
    tags = clf.__sklearn_tags__()
    assert tags.estimator_type == "classifier" and not tags.input_tags.allow_nan
    assert TransferCNNClassifier.__mro__[1].__name__ == "ClassifierMixin"


def test_fit_predict_with_string_labels_and_flat_rows(tiny_params):
    X, y = _blobs()
    clf = TransferCNNClassifier(**{**tiny_params, "short_epochs": 8, "long_epochs": 2}).fit(
        X.reshape(len(X), -1), y
    )
    assert list(clf.classes_) == ["frown", "smile"]
    assert clf.n_features_in_ == 144 and clf.image_shape_ == (12, 12, 1)
    proba = clf.predict_proba(X.reshape(len(X), -1))
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(clf.predict(X.reshape(len(X), -1))) <= {"frown", "smile"}
    assert clf.score(X.reshape(len(X), -1), y) > 0.9
    assert clf.history_["phase"] == ["short"] * 8 + ["long"] * 2 and clf.long_phase_start_ == 8


def test_clone_of_fitted_and_unfitted(tiny_params):
    X, y = _blobs()
    clf = TransferCNNClassifier(**tiny_params)
    assert clone(clf).get_params() == clf.get_params()
    clf.fit(X, y)
    fresh = clone(clf)
    assert not hasattr(fresh, "model_") and fresh.get_params() == clf.get_params()
    clf.set_params(head=(4, 4))
    assert clf.get_params()["head"] == (4, 4)


@pytest.mark.parametrize("dump", ["joblib", "pickle"])
def test_round_trip_keeps_the_trained_model(tiny_params, dump):
    X, y = _blobs()
    clf = TransferCNNClassifier(**tiny_params).fit(X, y)
    before = clf.predict_proba(X)
    if dump == "joblib":
        buffer = io.BytesIO()
        joblib.dump(clf, buffer)
        buffer.seek(0)
        restored = joblib.load(buffer)
    else:
        restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), before)
    assert restored.history_ == clf.history_ and restored.model_ is not clf.model_


def test_grid_search_over_head_and_learning_rate(tiny_params):
    X, y = _blobs()
    search = GridSearchCV(
        TransferCNNClassifier(**tiny_params),
        [
            {"head": [(4,)], "short_learning_rate": [1e-3]},
            {"head": [(8,)], "short_learning_rate": [1e-2]},
        ],
        cv=2,
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert search.best_estimator_.predict(X).shape == (len(X),)


def test_cross_val_score_is_stratified(tiny_params):
    X, y = _blobs()
    order = np.argsort(y, kind="stable")  # all frowns, then all smiles
    # Unstratified 3-fold splits would train on one class and fail; skfer is a classifier,
    # so cv=3 stratifies.
    scores = cross_val_score(TransferCNNClassifier(**tiny_params), X[order], y[order], cv=3)
    assert scores.shape == (3,)


def test_pipeline_with_a_preprocessing_step(tiny_params):
    X, y = _blobs()
    invert = FunctionTransformer(lambda images: 255 - images)
    pipe = Pipeline([("invert", invert), ("cnn", TransferCNNClassifier(**tiny_params))])
    pipe.fit(X, y)
    assert pipe.predict_proba(X).shape == (len(X), 2)
    assert pipe.named_steps["cnn"].classes_.tolist() == ["frown", "smile"]


def test_fit_does_not_mutate_the_callers_arrays(tiny_params):
    X, y = _blobs()
    X_copy, y_copy = X.copy(), y.copy()
    TransferCNNClassifier(**tiny_params).fit(X, y)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_same_random_state_gives_identical_predictions(tiny_params):
    X, y = _blobs()
    first = TransferCNNClassifier(**tiny_params).fit(X, y).predict_proba(X)
    second = TransferCNNClassifier(**tiny_params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


# scikit-learn's generic checks feed tabular rows of 2, 3, 5 or 10 features. skfer takes images
# and refuses flat rows whose length is not a square number of pixels rather than guess a shape;
# these checks therefore stop at that error (each is a strict expected failure: it fails today,
# and an unexpected pass fails the suite). The tests below check on images what the checks on
# fit state, idempotence, sample order, class weights and read-only input would.
NOT_AN_IMAGE = "sklearn feeds non-square flat rows (2-10 features), which are not images"
EXPECTED_FAILED_CHECKS = {
    name: NOT_AN_IMAGE
    for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_estimators_dtypes",
        "check_dtype_object",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_classifier_data_not_an_array",
        "check_classifiers_classes",
        "check_classifiers_train",
        "check_supervised_y_2d",
        "check_class_weight_classifiers",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
        "check_transformer_general",
        "check_transformer_data_not_an_array",
    )
}


@parametrize_with_checks([TransferCNNClassifier(**TINY)])
def test_scikit_learn_estimator_checks(estimator, check, request):
    name = getattr(check, "func", check).__name__
    if name in EXPECTED_FAILED_CHECKS:
        request.applymarker(
            pytest.mark.xfail(reason=EXPECTED_FAILED_CHECKS[name], strict=True, raises=ValueError)
        )
    check(estimator)


def test_fit_sets_only_underscored_state_and_predict_changes_nothing(tiny_params):
    X, y = _blobs()
    clf = TransferCNNClassifier(**tiny_params)
    before = dict(vars(clf))
    clf.fit(X, y)
    added = set(vars(clf)) - set(before)
    assert all(name.endswith("_") or name.startswith("_") for name in added), added
    assert {name: vars(clf)[name] for name in before} == before  # parameters untouched
    fitted = dict(vars(clf))
    clf.predict(X), clf.predict_proba(X), clf.transform(X)
    assert vars(clf).keys() == fitted.keys()
    assert all(vars(clf)[name] is fitted[name] for name in fitted)


def test_fit_is_idempotent_and_predictions_follow_sample_order(tiny_params):
    X, y = _blobs()
    clf = TransferCNNClassifier(**tiny_params).fit(X, y)
    first = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X), first)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(clf.predict_proba(X[order]), first[order], atol=1e-6)


def test_read_only_memory_mapped_images(tiny_params, tmp_path):
    X, y = _blobs()
    joblib.dump(X, tmp_path / "X.joblib")
    mapped = joblib.load(tmp_path / "X.joblib", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    clf = TransferCNNClassifier(**tiny_params).fit(mapped, y)
    assert clf.predict(mapped).shape == (len(X),)


def test_class_weight_moves_predictions_toward_the_heavier_class(tiny_params):
    X, y = _blobs()
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, X.shape).astype(np.uint8)  # no signal: the prior decides
    params = {**tiny_params, "short_epochs": 3, "long_epochs": 0}
    frown = TransferCNNClassifier(**params, class_weight={"frown": 50.0, "smile": 1.0})
    smile = TransferCNNClassifier(**params, class_weight={"frown": 1.0, "smile": 50.0})
    assert (frown.fit(X, y).predict(X) == "frown").mean() > 0.9
    assert (smile.fit(X, y).predict(X) == "smile").mean() > 0.9


def test_fit_leaves_the_global_random_generators_alone(tiny_params):
    import random

    X, y = _blobs()
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    first = TransferCNNClassifier(**tiny_params).fit(X, y).predict_proba(X)
    assert random.getstate() == python_state
    after = np.random.get_state()  # noqa: NPY002
    assert np.array_equal(after[1], numpy_state[1]) and after[2] == numpy_state[2]
    TransferCNNClassifier(**{**tiny_params, "random_state": 1}).fit(X, y)
    np.random.seed(123)  # noqa: NPY002 (the caller's own seeding changes nothing either)
    random.seed(123)
    second = TransferCNNClassifier(**tiny_params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "params",
    [
        {"optimizer": "sgd", "pooling": "max"},
        {"optimizer": "adamw", "pooling": "flatten"},
        {"optimizer": "rmsprop", "pooling": "avg"},
    ],
)
def test_other_optimizers_and_poolings(tiny_params, params):
    X, y = _blobs()
    clf = TransferCNNClassifier(**{**tiny_params, **params, "short_epochs": 4}).fit(X, y)
    assert (
        np.isfinite(clf.history_["loss"]).all()
        and clf.history_["loss"][3] < clf.history_["loss"][0]
    )
    assert clf.score(X, y) > 0.5


def test_validation_data_drives_early_stopping_and_history(tiny_params):
    X, y = _blobs()
    X_val, y_val = _blobs(32, seed=1)
    params = {**tiny_params, "short_epochs": 3, "long_epochs": 2, "patience": 1}
    clf = TransferCNNClassifier(**params).fit(X, y, validation_data=(X_val, y_val))
    assert len(clf.history_["val_accuracy"]) == len(clf.history_["phase"]) <= 5
    with pytest.raises(ValueError, match="labels absent from y"):
        clf.fit(X, y, validation_data=(X_val, np.where(y_val == "smile", "grin", y_val)))
