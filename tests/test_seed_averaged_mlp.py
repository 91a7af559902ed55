"""SeedAveragedMLP: the mean of MLPs that differ only in their seeds, the stacker of the cpu
preset."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neural_network import MLPClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfer.ensemble import SeedAveragedMLP, make_stacker, stacker_name


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 6)) + 2 * np.eye(3)[y].repeat(2, axis=1)
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([SeedAveragedMLP((16,), n_seeds=2, tol=1e-4)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_it_averages_the_mlps_of_the_seeds_drawn_from_random_state():
    X, y = _data()
    averaged = SeedAveragedMLP((16,), n_seeds=3, random_state=7).fit(X, y)
    seeds = np.random.RandomState(7).randint(np.iinfo(np.int32).max, size=3)
    singles = [
        MLPClassifier((16,), tol=averaged.tol, max_iter=1000, random_state=int(s)).fit(X, y)
        for s in seeds
    ]
    expected = np.mean([mlp.predict_proba(X) for mlp in singles], axis=0)
    np.testing.assert_allclose(averaged.predict_proba(X), expected)
    assert not np.allclose(singles[0].predict_proba(X), singles[1].predict_proba(X))
    np.testing.assert_array_equal(averaged.predict(X), averaged.classes_[expected.argmax(1)])
    again = clone(averaged).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), averaged.predict_proba(X))


def test_alpha_is_the_l2_penalty_of_every_mlp():
    X, y = _data()
    averaged = SeedAveragedMLP((16,), n_seeds=2, alpha=3.0, random_state=7).fit(X, y)
    seeds = np.random.RandomState(7).randint(np.iinfo(np.int32).max, size=2)
    singles = [
        MLPClassifier((16,), alpha=3.0, tol=averaged.tol, max_iter=1000, random_state=int(s))
        for s in seeds
    ]
    expected = np.mean([mlp.fit(X, y).predict_proba(X) for mlp in singles], axis=0)
    np.testing.assert_allclose(averaged.predict_proba(X), expected)
    default = SeedAveragedMLP((16,), n_seeds=2, random_state=7).fit(X, y)
    assert default.alpha == MLPClassifier().alpha
    assert not np.allclose(default.predict_proba(X), expected)
    # The penalty shrinks the weights.
    norm = [sum(np.sum(w**2) for w in m.estimators_[0].coefs_) for m in (averaged, default)]
    assert norm[0] < norm[1]


def test_bad_parameters_are_refused_before_any_work():
    X, y = _data(30)
    for name, value in [("n_seeds", 0), ("tol", 0.0), ("max_iter", 0), ("alpha", -1.0)]:
        with pytest.raises(ValueError, match=rf"{name} must be .* Received: {name}={value}"):
            SeedAveragedMLP(**{name: value}).fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be"):
        SeedAveragedMLP(hidden_layer_sizes=(0,)).fit(X, y)


def test_make_stacker_builds_one_mlp_or_the_seed_average():
    assert type(make_stacker((8, 8))) is MLPClassifier
    averaged = make_stacker((8, 8), seeds=5, random_state=3)
    assert type(averaged) is SeedAveragedMLP
    assert (averaged.n_seeds, averaged.hidden_layer_sizes, averaged.random_state) == (5, (8, 8), 3)
    assert averaged.tol == make_stacker().tol
    with pytest.raises(ValueError, match=r"seeds must be an integer >= 1. Received: seeds=0"):
        make_stacker(seeds=0)
    assert make_stacker().alpha == MLPClassifier().alpha
    assert make_stacker(alpha=0.5).alpha == 0.5
    assert make_stacker(seeds=5, alpha=0.5).alpha == 0.5
    assert make_stacker(kind="standardized_mlp", seeds=5, alpha=0.5)[-1].alpha == 0.5
    for alpha in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"alpha must be a number >= 0. Received: alpha="):
            make_stacker(alpha=alpha)
    assert stacker_name("mlp", 5) == "MLP (mean of 5 seeds)"
    assert stacker_name("mlp") == "MLP"
    assert stacker_name("logistic", 5) == "log-probability logistic regression"
