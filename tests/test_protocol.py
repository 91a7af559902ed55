"""The run's protocol: duplicates on one side, one purpose per image, the experts' stopping
score and the member selection's rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY, two_class_images
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import balanced_accuracy_score

import skfer
import skfer.ensemble
import skfer.reproduce
from skfer import OneVsAllExperts, TransferCNNClassifier
from skfer.cli import main
from skfer.integrity import has_copy_in
from skfer.presets import BaseModelPlan, Preset
from skfer.protocol import Part, split_by_image, split_for_run


def _images_with_copies(n: int = 280, seed: int = 0):
    """``n`` random 6x6 images in 7 classes; every fourth image is also present twice more
    (same label), and images 1 and 2 are copies of each other with different labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 6, 6)).astype(np.uint8)
    target = np.arange(n) % 7
    copies = np.arange(0, n, 4)
    images = np.concatenate([images, images[copies], images[copies]])
    target = np.concatenate([target, target[copies], target[copies]])
    images[2] = images[1]  # a copy with another label (target 2 against 1)
    return images, target


def test_copies_stay_in_one_part_and_conflicting_copies_are_dropped():
    images, target = _images_with_copies()
    test_images = np.concatenate([images[4:6], np.full((3, 6, 6), 7, np.uint8)])
    splits = split_for_run(
        Part(images, target),
        {"PublicTest": (test_images, np.zeros(5, int))},
        stop_fraction=0.1,
        stack_fraction=0.2,
        seed=0,
    )
    parts = (splits.fit, splits.stop, splits.stack)
    for index, first in enumerate(parts):
        for second in parts[index + 1 :]:
            assert not has_copy_in(first.images, second.images).any()
    assert splits.counts["conflicting_dropped"] == 2
    assert not has_copy_in(images[1:3], np.concatenate([p.images for p in parts])).any()
    assert sum(len(part) for part in parts) == len(target) - 2
    assert 0.07 < len(splits.stop) / len(target) < 0.13 and len(splits.stack) > len(splits.stop)
    for part in parts:  # stratified: every class in every part
        assert np.unique(part.target).size == 7
    (public,) = splits.tests
    assert public.in_training.tolist() == [True, True, False, False, False]
    assert {name: rows.tolist() for name, rows in public.views().items()} == {
        "PublicTest": [0, 1, 2, 3, 4],
        "PublicTest without Training copies": [2, 3, 4],
    }


def test_split_by_image_refuses_groups_with_two_labels():
    with pytest.raises(ValueError, match="one label"):
        split_by_image(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 2]), (0.25,), 0)


def _write_csv(path, images, target, usage):
    lines = ["emotion,pixels,Usage"] + [
        f"{label},{' '.join(map(str, image.ravel()))},{split}"
        for image, label, split in zip(images, target, usage, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, True], ids=["stack", "fallback"])
def test_no_stack_image_reaches_a_members_training_or_stopping(tmp_path, monkeypatch, fallback):
    """The whole run on the tiny backbone, every fit spied on: the stacking part's images
    are in no member's training or validation data, and Training copies of a test image are
    reported in the second view. The stacking part's best member is rigged to score 1.0
    there, so that with ``fallback_to_best_member`` the stack (whose CV is below 1.0) is
    never shipped: the run ships that member, and reports and saves the stack beside it."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7 * 40, 48, 48)).astype(np.uint8)
    target = np.arange(len(images)) % 7
    images[7:14] = images[:7]  # copies of the same label: must stay on one side
    test = rng.integers(0, 256, (14, 48, 48)).astype(np.uint8)
    test[:2] = images[20:22]
    csv = _write_csv(
        tmp_path / "fer.csv",
        np.concatenate([images, test]),
        np.concatenate([target, np.arange(14) % 7]),
        ["Training"] * len(images) + ["PublicTest"] * 14,
    )
    tiny = {key: value for key, value in TINY.items() if key not in ("random_state", "verbose")}
    plan = Preset(
        name="quick",
        description="tiny",
        base_models=(
            BaseModelPlan("tiny", tiny),
            BaseModelPlan("tiny, other head", {**tiny, "head": (4,)}, seed_offset=1),
        ),
        stop_fraction=0.2,
        stack_fraction=0.25,
        stacker_layers=(8, 4),
        fallback_to_best_member=fallback,
    )
    monkeypatch.setitem(skfer.reproduce.PRESETS, "quick", plan)
    seen, captured, seeds = [], {}, []
    fit = TransferCNNClassifier.fit

    def spy(self, X, y, **kwargs):
        seeds.append(self.random_state)
        seen.append(np.asarray(X))
        if kwargs.get("validation_data") is not None:
            seen.append(np.asarray(kwargs["validation_data"][0]))
        return fit(self, X, y, **kwargs)

    def capture(*args, **kwargs):
        captured["splits"] = split_for_run(*args, **kwargs)
        return captured["splits"]

    uncached = []
    probabilities = TransferCNNClassifier._probabilities

    def count_uncached(self, images, cached):
        uncached.append(not cached)
        return probabilities(self, images, cached)

    # Rigged scores make the stopping part's best base model ("tiny") and the stacking part's
    # best member ("tiny, other head") differ, and every candidate joins the ensemble: the
    # ensemble must be built on, and the paired test compare with, the stacking part's best.
    score = TransferCNNClassifier.score

    def rigged_score(self, X, y, **kwargs):
        favoured = "stop" if self.head == (8,) else "stack"
        if len(X) == len(getattr(captured["splits"], favoured)):
            return 1.0
        return score(self, X, y, **kwargs)

    select = skfer.reproduce.select_experts

    def select_all(*args, **kwargs):
        return select(*args, **{**kwargs, "min_gain": -1.0})

    monkeypatch.setattr(TransferCNNClassifier, "score", rigged_score)
    monkeypatch.setattr(skfer.reproduce, "select_experts", select_all)
    monkeypatch.setattr(TransferCNNClassifier, "fit", spy)
    monkeypatch.setattr(TransferCNNClassifier, "_probabilities", count_uncached)
    monkeypatch.setattr(skfer.reproduce, "split_for_run", capture)
    out = tmp_path / "out"
    # What an earlier run into the same folder left that this run does not write.
    (out / "models").mkdir(parents=True)
    (out / "models" / ("ensemble.skfer" if fallback else "stack_not_shipped.skfer")).touch()
    (out / "models" / "base_model_3.skfer").touch()  # a run with one more base model
    argv = ["reproduce", "--data", str(csv), "--out", str(out), "--weights-dir", str(tmp_path)]
    assert main([*argv, "--stacker", "logistic", "--quiet"]) == 0  # the MLP: test_reproduce.py
    stack = captured["splits"].stack
    assert len(seen) == 2 * (2 + 7)  # two base models and seven experts, each with validation
    assert seeds == [0, 1] + [0] * 7  # the run's seed, plus the second base model's offset
    # Every prediction of the run came from the feature cache (the backbone ran once per
    # image set); the saved models predict without it, as a user's do (below).
    assert uncached and not any(uncached)
    for images_seen in seen:
        assert not has_copy_in(images_seen, stack.images).any()
    document = json.loads((out / "results.json").read_text())
    views = {row["split"] for row in document["results"]}
    assert views == {"PublicTest", "PublicTest without Training copies"}
    assert {row["n_samples"] for row in document["results"]} == {14, 12}
    assert document["protocol"]["test_images_with_a_training_copy"] == {"PublicTest": 2}
    paired = document["ensemble_minus_best_member"]["PublicTest"]
    assert set(paired) >= {"difference", "interval", "mcnemar_p_value"}
    # The paired test is against the member that the stacking CV names as the best.
    public = {r["model"]: r["accuracy"] for r in document["results"] if r["split"] == "PublicTest"}
    best_member = document["stacking_cv"]["best_member"]
    assert (document["best_base_model"], best_member) == ("tiny", "tiny, other head")
    # The ensemble is built on the base model most accurate on the stacking part, not on the
    # stopping part's best.
    selection = document["member_selection"]
    assert selection["members"][0] == best_member
    assert max(selection["stack_accuracy"], key=selection["stack_accuracy"].get) == best_member
    # The stacking CV line: the selection's last score against the base's own accuracy.
    stacking = document["stacking_cv"]
    assert stacking["ensemble_cv_accuracy"] == selection["steps"][-1][1]
    assert stacking["best_member_accuracy"] == selection["stack_accuracy"][best_member]
    # Its paired form: the stack's out-of-fold predictions against the member's, on the
    # stacking part's images (its figure against the unrigged score: test_reproduce.py).
    stack_paired = stacking["paired"]
    assert stack_paired["n_samples"] == len(stack.target) == stacking["images"]
    low, high = stack_paired["interval"]
    assert low <= stack_paired["difference"] <= high
    assert all(len(row["accuracy_interval"]) == 2 for row in document["results"])
    stack_file = "stack_not_shipped.skfer" if fallback else "ensemble.skfer"
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        "base_model_1.skfer",
        "base_model_2.skfer",
        stack_file,
    ]
    stack_label = "stack not shipped (logistic stack)" if fallback else "ensemble (logistic stack)"
    assert document["models"][stack_label] == stack_file
    shipped = document["ensemble_shipped"]
    assert shipped["ships"] == ("best member" if fallback else "stack")
    assert (shipped["best_member"], shipped["best_member_accuracy"]) == (best_member, 1.0)
    assert shipped["stack_cv_accuracy"] == stacking["ensemble_cv_accuracy"] < 1.0
    text = (out / "results.md").read_text()
    card = (out / "MODEL_CARD.md").read_text()
    if fallback:
        # The ensemble's row is the member's own predictions, its paired difference zero;
        # the stack is scored and paired against the member in rows of its own.
        assert public["ensemble (logistic stack)"] == public[best_member]
        assert paired["difference"] == 0 and paired["mcnemar_p_value"] == 1.0
        stack_paired = document["stack_minus_best_member"]["PublicTest"]
        expected = public[stack_label] - public[best_member]
        assert stack_paired["difference"] == pytest.approx(expected)
        member_file = document["models"][best_member]
        assert document["models"]["ensemble (logistic stack)"] == member_file
        assert document["recommended_model"] == member_file
        # The run folder loads the member, as `skfer predict RUN` does.
        assert skfer.persistence.run_model_file(out) == out / "models" / member_file
        assert isinstance(skfer.load(out), TransferCNNClassifier)
        assert "**The run ships its best member alone as its ensemble**" in text
        assert "- PublicTest: stack (not shipped) − best member: " in text
        assert f"The run ships {best_member} alone as its ensemble" in card
        assert f"skfer predict {(out / 'models').as_posix()}/{member_file} photo.jpg" in card
        assert "The stack that the run did not ship, against the same member:" in card
    else:
        expected = public["ensemble (logistic stack)"] - public[best_member]
        assert paired["difference"] == pytest.approx(expected)
        assert "stack_minus_best_member" not in document
        assert document["recommended_model"] == "ensemble.skfer"
        assert "The run ships the stack (the stack regardless: the preset's" in text
        assert f"skfer predict {(out / 'models').as_posix()}/ensemble.skfer photo.jpg" in card
    loaded = skfer.load(out / "models" / stack_file)
    (row,) = [
        r for r in document["results"] if r["model"] == stack_label and r["split"] == "PublicTest"
    ]
    assert np.mean(loaded.predict(test) == np.arange(14) % 7) == row["accuracy"]
    assert any(uncached)
    assert not any(member.estimator.cache_predictions for member in loaded.estimators_[:1])
    assert type(loaded.final_estimator_.steps[1][1]).__name__ == "LogisticRegression"
    assert "- base model tiny, other head: " in text and "; seed 0 + 1\n" in text
    assert f"Ensemble against its best member ({best_member}), paired on the same test" in text
    assert "the out-of-fold predictions against the member's, paired: stack − best" in text
    assert "- stacker: logistic regression on the members' log-probabilities" in text


def test_balanced_accuracy_stopping_keeps_the_epoch_with_the_best_balanced_accuracy():
    X, y = two_class_images(120, 24, darken=2)
    y = np.where(np.arange(120) % 6 == 0, 1, 0)  # imbalanced: class 1 is a sixth
    X[y == 1, :12] //= 3
    X_val, y_val = X[:60], y[:60]
    clf = TransferCNNClassifier(
        **{**TINY, "short_epochs": 8, "long_epochs": 0, "patience": 8},
        stopping_metric="balanced_accuracy",
        class_weight="balanced",
    ).fit(X[60:], y[60:], validation_data=(X_val, y_val))
    history = clf.history_["val_balanced_accuracy"]
    assert len(history) == 8
    assert balanced_accuracy_score(y_val, clf.predict(X_val)) == pytest.approx(max(history))


def test_experts_stop_on_balanced_accuracy_by_default():
    experts = OneVsAllExperts(TransferCNNClassifier(**TINY))
    assert experts.stopping_metric == "balanced_accuracy"
    X, y = two_class_images(40, 24, darken=2)
    fitted = experts.fit(X, y, validation_data=(X[:10], y[:10]))
    for expert in fitted.experts_:
        assert expert.estimator_.stopping_metric == "balanced_accuracy"
        assert "val_balanced_accuracy" in expert.estimator_.history_


class FixedProba(ClassifierMixin, BaseEstimator):
    """A fitted stand-in member: predicts the probabilities it was given."""

    def __init__(self, proba=None):
        self.proba = proba

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        return self.proba[: len(X)]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _members_and_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    base = FixedProba(rng.dirichlet(np.ones(3), n))  # uninformative
    base.classes_ = np.arange(3)
    experts = OneVsAllExperts(FixedProba(), class_weight=None).fit(np.zeros((n, 2)), y)
    for expert in experts.experts_:
        expert.estimator_ = FixedProba(rng.random((n, 1)) * [[-1, 1]] + [[1, 0]])
        expert.estimator_.classes_ = np.array([False, True])
    return base, experts, np.zeros((n, 2)), y


def test_selection_stops_when_the_gain_is_at_most_min_gain(monkeypatch):
    """Every candidate scores exactly as the base alone: a gain of 0 selects none."""
    calls = []

    def same_score(estimator, X, y, cv):
        calls.append((X.shape[1], estimator.random_state, cv[0][1].tolist()))
        return np.array([0.5])

    monkeypatch.setattr(skfer.ensemble, "cross_val_score", same_score)
    base, experts, X, y = _members_and_data()
    selection = skfer.ensemble.select_experts(
        base, experts, X, y, cv=3, min_gain=0.0, random_state=7
    )
    assert selection.selected == () and selection.steps == ()
    assert {seed for _, seed, _ in calls} == {7}
    other = skfer.ensemble.select_experts(base, experts, X, y, cv=3, min_gain=0.0, random_state=8)
    assert other.selected == ()
    first_folds = [fold for _, seed, fold in calls if seed == 7][:3]
    other_folds = [fold for _, seed, fold in calls if seed == 8][:3]
    assert first_folds != other_folds  # the seed draws the folds


@pytest.mark.parametrize("stacker", ["mlp", "logistic"])
def test_selection_takes_other_members_beside_the_experts(stacker):
    base, experts, X, y = _members_and_data()
    informative = FixedProba(np.eye(3)[y])
    informative.classes_ = np.arange(3)
    selection = skfer.ensemble.select_experts(
        base, experts, X, y, others={"perfect": informative}, cv=3, random_state=0, stacker=stacker
    )
    assert "perfect" in selection.candidates and selection.selected_others == ("perfect",)
    assert ("MLP" if stacker == "mlp" else "logistic regression") in selection.rule
    ensemble = skfer.ensemble.make_fer_ensemble(
        base, experts, expert_classes=[], others=[("perfect", informative)], random_state=0
    ).fit(X, y)
    assert [name for name, _ in ensemble.estimators] == ["base", "model_perfect"]


def test_gpu_preset_without_a_gpu_is_a_clear_usage_error(tmp_path, capsys):
    from skfer.backend import has_gpu

    if has_gpu():
        pytest.skip("this machine has a GPU: --preset gpu runs here")
    csv = _write_csv(
        tmp_path / "fer.csv", np.zeros((2, 48, 48), np.uint8), [0, 1], ["Training"] * 2
    )
    assert main(["reproduce", "--preset", "gpu", "--data", str(csv), "--out", str(tmp_path)]) == 2
    assert "--preset gpu needs a GPU" in capsys.readouterr().err


def test_a_model_on_the_stacking_part_trains_on_it_and_is_never_a_member(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (168, 48, 48)).astype(np.uint8)  # 6 per class to stack
    csv = _write_csv(
        tmp_path / "fer.csv",
        np.concatenate([images, rng.integers(0, 256, (14, 48, 48)).astype(np.uint8)]),
        np.concatenate([np.arange(168) % 7, np.arange(14) % 7]),
        ["Training"] * 168 + ["PublicTest"] * 14,
    )
    tiny = {key: value for key, value in TINY.items() if key not in ("random_state", "verbose")}
    plan = Preset(
        name="quick",
        description="tiny",
        base_models=(
            BaseModelPlan("single", tiny, on_stacking_part=True),
            BaseModelPlan("member", tiny, seed_offset=1),
        ),
        stop_fraction=0.2,
        stack_fraction=0.25,
        stacker_layers=(8, 4),
    )
    monkeypatch.setitem(skfer.reproduce.PRESETS, "quick", plan)
    trained, captured = {}, {}
    fit = TransferCNNClassifier.fit

    def spy(self, X, y, **kwargs):
        trained.setdefault(self.random_state, np.asarray(X))
        return fit(self, X, y, **kwargs)

    def capture(*args, **kwargs):
        captured["splits"] = split_for_run(*args, **kwargs)
        return captured["splits"]

    # The stopping part's best model is the one on the stacking part: the experts must still
    # start from a member's backbone, and the ensemble be built on a member.
    score = TransferCNNClassifier.score

    def rigged_score(self, X, y, **kwargs):
        single = self.random_state == 0 and len(X) == len(captured["splits"].stop)
        return 1.0 if single else score(self, X, y, **kwargs)

    monkeypatch.setattr(TransferCNNClassifier, "fit", spy)
    monkeypatch.setattr(TransferCNNClassifier, "score", rigged_score)
    monkeypatch.setattr(skfer.reproduce, "split_for_run", capture)
    experts_on = []
    train_experts = skfer.reproduce.train_experts

    def record_experts(context, run, source, label):
        experts_on.append(label)
        return train_experts(context, run, source, label)

    monkeypatch.setattr(skfer.reproduce, "train_experts", record_experts)
    out = tmp_path / "out"
    argv = ["reproduce", "--data", str(csv), "--out", str(out), "--weights-dir", str(tmp_path)]
    assert main([*argv, "--stacker", "logistic", "--quiet"]) == 0
    splits = captured["splits"]
    np.testing.assert_array_equal(
        trained[0], np.concatenate([splits.fit.images, splits.stack.images])
    )
    np.testing.assert_array_equal(trained[1], splits.fit.images)
    document = json.loads((out / "results.json").read_text())
    assert document["best_base_model"] == "single" and experts_on == ["member"]
    selection = document["member_selection"]
    assert list(selection["stack_accuracy"]) == ["member"] and selection["members"][0] == "member"
    assert "single" not in selection["first_round"]
    notes = {row["model"]: row.get("note") for row in document["results"]}
    assert notes["single"] == "trained on the fit and stacking parts: not an ensemble member"
    assert notes["member"] is None
    text = (out / "results.md").read_text()
    assert "- base model single: " in text and "stacking parts: not an ensemble member" in text


def test_on_stacking_part_is_a_bool():
    with pytest.raises(ValueError, match="on_stacking_part must be True or False"):
        BaseModelPlan("model", {"backbone": "mobilenet"}, on_stacking_part=1)
