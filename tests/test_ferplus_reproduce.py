"""``skfer reproduce --dataset ferplus``: the table on FER+ majority labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY
from test_ferplus import write_fer2013, write_ferplus

import skfer.presets
import skfer.reproduce
from skfer.cli import main
from skfer.ferplus import FERPLUS_CLASSES

N_TRAIN, N_TEST = 40, 4  # rows per FER+ class; 5-fold expert selection needs 5 held out


@pytest.fixture
def ferplus_files(tmp_path) -> tuple[Path, Path]:
    """A FER2013 CSV and its FER+ labels: every class, plus one not-a-face Training row."""
    rows = []
    for usage, n in (("Training", N_TRAIN), ("PublicTest", N_TEST)):
        for k in range(len(FERPLUS_CLASSES)):
            votes = [0] * 10
            votes[k], votes[(k + 1) % 8] = 8, 2
            rows += [(usage, f"fer{len(rows) + i}.png", votes) for i in range(n)]
    rows.append(("Training", "", [0] * 9 + [10]))
    fer = write_fer2013(tmp_path / "fer2013.csv", [usage for usage, _, _ in rows])
    return fer, write_ferplus(tmp_path / "fer2013new.csv", rows)


@pytest.mark.slow
def test_quick_preset_path_on_ferplus_labels(ferplus_files, tmp_path, monkeypatch, capsys):
    """The whole table (base model on labels and on votes, 8 experts, ensemble, figures) on
    the tiny test backbone: about a minute on 2 CPU cores."""
    tiny = {key: value for key, value in TINY.items() if key not in ("random_state", "verbose")}
    # Two long epochs, ended on their mean where it scores as well (recorded per model).
    tiny.update(long_epochs=2, average_last_epochs=2)
    plan = skfer.presets.Preset(
        name="quick",
        description="the quick preset's steps on the tiny test backbone",
        base_models=(skfer.presets.BaseModelPlan("tiny", tiny),),
        train_per_class=300,
        stop_fraction=0.15,
        stack_fraction=0.2,
        stacker_layers=(8, 4),
        ferplus_stacker="standardized_mlp",
        # The stack is shipped as the ensemble whatever its CV, so that its file is there to
        # check (the fallback to the best member: test_protocol.py).
        fallback_to_best_member=False,
    )
    monkeypatch.setitem(skfer.presets.PRESETS, "quick", plan)
    out = tmp_path / "out"
    fer, labels = ferplus_files
    args = ["reproduce", "--dataset", "ferplus", "--ferplus-labels", labels, "--data", fer]
    assert main([*map(str, args), "--out", str(out), "--weights-dir", str(tmp_path)]) == 0
    n_train = len(FERPLUS_CLASSES) * N_TRAIN  # the not-a-face row is left out
    n_stop, n_stack = round(0.15 * n_train), round(0.2 * n_train)
    expected = f"{n_train - n_stop - n_stack} fit, {n_stop} stop, {n_stack} stack images"
    assert expected in capsys.readouterr().out
    document = json.loads((out / "results.json").read_text())
    assert document["dataset"] == "ferplus"
    soft = "tiny, soft targets (FER+ votes)"
    assert {row["model"] for row in document["results"]} == {
        "tiny",
        soft,
        "one-vs-all experts alone",
        "ensemble (MLP stack, standardized inputs)",  # the preset's ferplus_stacker
    }
    assert document["preset"]["stacker"] == "standardized_mlp"
    # The run's own base models, the votes twin with them.
    assert [base["label"] for base in document["preset"]["base_models"]] == ["tiny", soft]
    assert (
        "- stacking MLP on standardized inputs: hidden layers (8, 4)"
        in (out / "results.md").read_text()
    )
    final = skfer.load(out / "models" / "ensemble.skfer").final_estimator_
    assert [name for name, _ in final.steps] == ["standardscaler", "mlpclassifier"]
    assert set(document["stop_accuracy"]) == {"tiny", soft}
    assert set(document["weight_averages"]) == {"tiny", soft}
    assert all(average["epochs"] == [2, 3] for average in document["weight_averages"].values())
    assert "- base model tiny, soft targets (FER+ votes): " in (out / "results.md").read_text()
    for row in document["results"]:
        assert row["n_samples"] == len(FERPLUS_CLASSES) * N_TEST  # no test image in Training
        assert tuple(row["recall_per_class"]) == FERPLUS_CLASSES
        assert len(row["confusion_matrix"]) == len(FERPLUS_CLASSES)
    assert set(document["member_selection"]["first_round"]) <= {
        *(f"expert {name}" for name in FERPLUS_CLASSES),
        "tiny",
        soft,
    }
    assert (out / "results.md").read_text().startswith("# skfer reproduce --preset quick --dataset")
    assert "FER+: new labels for FER2013's images" in (out / "MODEL_CARD.md").read_text()
    for picture in ("confusion_matrix.png", "accuracy_curves.png"):
        assert (out / picture).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ferplus-labels", "absent.csv"], "no such file"),
        (
            ["--dataset", "ferplus", "--ferplus-labels", "{labels}", "--test", "{fer}"],
            "--test-ferplus-labels",
        ),
        (["--test-ferplus-labels", "{labels}"], "goes with --test and --dataset ferplus"),
        (["--dataset", "ferplus", "--ferplus-labels", "absent.csv"], "no such file"),
    ],
)
def test_cli_options_are_checked_before_training(ferplus_files, extra, message, capsys):
    fer, labels = ferplus_files
    extra = [value.format(labels=labels, fer=fer) for value in extra]
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--data", str(fer), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_misaligned_ferplus_file_is_an_invalid_file(ferplus_files, tmp_path, capsys):
    fer, labels = ferplus_files
    short = tmp_path / "short.csv"
    short.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    args = ["reproduce", "--dataset", "ferplus", "--ferplus-labels", short, "--data", fer]
    assert main([*map(str, args), "--out", str(tmp_path / "out")]) == 4
    assert "rows but the FER2013 file" in capsys.readouterr().err


def test_reproduce_needs_the_test_files_ferplus_votes(ferplus_files, tmp_path):
    fer, labels = ferplus_files
    with pytest.raises(ValueError, match="pass its FER\\+ votes as test_ferplus_csv"):
        skfer.reproduce.reproduce(
            "quick", fer, tmp_path, test=fer, dataset="ferplus", ferplus_csv=labels
        )
