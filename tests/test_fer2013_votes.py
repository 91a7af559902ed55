"""FER+ votes as a second opinion on a FER2013 run: members trained on them (``vote_share``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY
from test_ferplus import write_fer2013, write_ferplus

import skfer.reproduce
from skfer.classifier import TransferCNNClassifier
from skfer.cli import main
from skfer.datasets import load_fer2013
from skfer.ferplus import FER2013_TO_FERPLUS, FERPLUS_CLASSES, fer2013_vote_distribution
from skfer.presets import BaseModelPlan, Preset, base_models_for
from skfer.reproduce import Progress, RunContext, load_run_data, train_base_models
from skfer.soft_targets import mix_with_labels

# FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
VOTE_ROWS = [
    ("Training", "a.png", [6, 0, 0, 0, 2, 0, 0, 2, 0, 0]),  # neutral 6, anger 2, contempt 2
    ("Training", "b.png", [0, 0, 0, 0, 0, 0, 0, 3, 2, 5]),  # no vote among FER2013's seven
    ("Training", "c.png", [0, 5, 5, 0, 0, 0, 0, 0, 0, 0]),  # happiness 5, surprise 5
    ("PublicTest", "d.png", [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]),  # sadness
]


def test_the_seven_classes_map_to_ferplus_names():
    assert set(FER2013_TO_FERPLUS.values()) == set(FERPLUS_CLASSES) - {"contempt"}


def test_votes_over_fer2013_classes_by_hand(tmp_path):
    fer = write_fer2013(tmp_path / "fer2013.csv", [usage for usage, _, _ in VOTE_ROWS])
    votes = fer2013_vote_distribution(fer, write_ferplus(tmp_path / "new.csv", VOTE_ROWS))
    # FER2013 order: angry, disgust, fear, happy, sad, surprise, neutral
    np.testing.assert_allclose(votes.distribution[0], [0.25, 0, 0, 0, 0, 0, 0.75])
    assert np.isnan(votes.distribution[1]).all()
    np.testing.assert_allclose(votes.distribution[2], [0, 0, 0, 0.5, 0, 0.5, 0])
    np.testing.assert_allclose(votes.distribution[3], [0, 0, 0, 0, 1, 0, 0])
    assert votes.no_votes.tolist() == [1]


def test_votes_need_a_row_aligned_csv(tmp_path):
    fer = write_fer2013(tmp_path / "fer2013.csv", ["Training"] * 3)
    labels = write_ferplus(tmp_path / "new.csv", VOTE_ROWS)
    with pytest.raises(ValueError, match="rows but the FER2013 file"):
        fer2013_vote_distribution(fer, labels)
    with pytest.raises(ValueError, match="is a folder"):
        fer2013_vote_distribution(tmp_path, labels)


def test_mix_with_labels_by_hand():
    distribution = np.array([[0.5, 0.5, 0.0], [np.nan, np.nan, np.nan]])
    mixed = mix_with_labels(distribution, np.array([2, 1]), 0.25, 3)
    np.testing.assert_allclose(mixed, [[0.125, 0.125, 0.75], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(mix_with_labels(distribution[:1], [2], 1.0, 3), [[0.5, 0.5, 0]])
    with pytest.raises(ValueError, match="share must be in"):
        mix_with_labels(distribution, np.array([2, 1]), 1.5, 3)


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "half"])
def test_vote_share_is_checked(share):
    with pytest.raises(ValueError, match="vote_share must be a number in"):
        BaseModelPlan("m", {"backbone": "tiny"}, vote_share=share)


def test_vote_members_run_on_fer2013_alone():
    plain, voted = BaseModelPlan("a", {"backbone": "x"}), BaseModelPlan("b", {}, vote_share=0.5)
    plan = Preset("p", "", (plain, voted))
    assert base_models_for(plan, "fer2013") == (plain, voted)
    assert all(not base.vote_share for base in base_models_for(plan, "ferplus"))
    assert [base.label for base in base_models_for(plan, "ferplus")] == [
        "a",
        "a, soft targets (FER+ votes)",
    ]


@pytest.fixture
def fer2013_with_votes(tmp_path):
    """84 Training rows (12 per FER2013 class) and 14 PublicTest rows, all with FER+ votes;
    one Training row has none among FER2013's seven."""
    rng = np.random.default_rng(0)
    usages = ["Training"] * 84 + ["PublicTest"] * 14
    rows = [(usage, f"{i}.png", rng.integers(0, 4, 10).tolist()) for i, usage in enumerate(usages)]
    rows[5] = ("Training", "5.png", [0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    return (
        write_fer2013(tmp_path / "fer2013.csv", usages),
        write_ferplus(tmp_path / "new.csv", rows),
    )


@pytest.mark.parametrize("with_votes", [True, False])
def test_a_vote_member_trains_on_the_mix_or_is_skipped(
    fer2013_with_votes, tmp_path, monkeypatch, with_votes
):
    fer, labels = fer2013_with_votes
    tiny = {key: value for key, value in TINY.items() if key not in ("random_state", "verbose")}
    plan = Preset(
        "p",
        "",
        (BaseModelPlan("labels", tiny), BaseModelPlan("votes", tiny, vote_share=0.5)),
        stop_fraction=0.15,
        stack_fraction=0.2,
    )
    received = {}
    fit = TransferCNNClassifier.fit

    def spy(self, X, y, **kwargs):
        received[len(received)] = kwargs.get("target_distribution")
        return fit(self, X, y, **kwargs)

    monkeypatch.setattr(TransferCNNClassifier, "fit", spy)
    context = RunContext(plan, "fer2013", tmp_path, None, 0, Progress(0))
    run = load_run_data(context, fer, ferplus_csv=labels if with_votes else None)
    bases = train_base_models(context, run)
    assert received[0] is None
    if not with_votes:
        assert list(bases.models) == ["labels"] and len(received) == 1
        assert bases.skipped == [
            "votes: trains on FER+ votes: pass FER+'s fer2013new.csv (--ferplus-labels)"
        ]
        return
    assert list(bases.models) == ["labels", "votes"] and bases.skipped == []
    assert context.document["fer2013_votes"]["no_votes"] == 1
    # The fit part's targets: half its FER2013 label, half its own row of FER+ votes.
    train = load_fer2013(fer).train
    row_of = {image.tobytes(): row for image, row in zip(train.images, train.rows, strict=True)}
    rows = [row_of[image.tobytes()] for image in run.splits.fit.images]
    votes = fer2013_vote_distribution(fer, labels).distribution[rows]
    expected = mix_with_labels(votes, run.splits.fit.target, 0.5, 7)
    np.testing.assert_allclose(received[1], expected)


def test_cli_refuses_a_missing_ferplus_file_on_fer2013(fer2013_with_votes, capsys):
    fer, _ = fer2013_with_votes
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--data", str(fer), "--ferplus-labels", "absent.csv"])
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err


def test_votes_are_read_only_for_a_member_that_trains_on_them(fer2013_with_votes, tmp_path):
    fer, labels = fer2013_with_votes
    labels_only = (BaseModelPlan("labels", {"backbone": "tiny"}),)
    plan = Preset("p", "", labels_only, stop_fraction=0.15, stack_fraction=0.2)
    context = RunContext(plan, "fer2013", tmp_path, None, 0, Progress(0))
    run = load_run_data(context, fer, ferplus_csv=labels)
    assert run.splits.fit.distribution is None and "fer2013_votes" not in context.document


@pytest.mark.parametrize("default_data", [True, False])
def test_cli_pairs_the_default_votes_with_the_default_images_only(
    fer2013_with_votes, tmp_path, monkeypatch, default_data
):
    fer, labels = fer2013_with_votes
    home = tmp_path / "home"
    (home / "data/fer2013").mkdir(parents=True)
    (home / "data/ferplus").mkdir(parents=True)
    (home / "data/fer2013/fer2013.csv.gz").write_bytes(fer.read_bytes())
    (home / "data/ferplus/fer2013new.csv").write_bytes(labels.read_bytes())
    monkeypatch.setenv("SKFER_HOME", str(home))
    received = {}
    monkeypatch.setattr(skfer.reproduce, "reproduce", lambda *a, **k: received.update(k))
    data = home / "data/fer2013/fer2013.csv.gz" if default_data else fer
    assert main(["reproduce", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    expected = str(home / "data/ferplus/fer2013new.csv") if default_data else None
    assert received["ferplus_csv"] == expected
