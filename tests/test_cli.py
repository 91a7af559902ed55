"""The ``skfer`` command line, on a 210-image FER2013 subset and MobileNet 0.25 at 32 px."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skfer.cli import main
from skfer.datasets import FER2013_CLASSES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 20, 10  # images per class


def run_cli(*args) -> subprocess.CompletedProcess:
    """Run ``python -m skfer.cli ARGS`` in a subprocess, as a shell user would."""
    return subprocess.run(
        [sys.executable, "-m", "skfer.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def small_csv(fer2013, tmp_path_factory) -> Path:
    """20 Training and 10 PublicTest images per class, in the Kaggle CSV layout."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for split, n in ((fer2013.train, N_TRAIN), (fer2013.public_test, N_TEST)):
        for k in range(len(FER2013_CLASSES)):
            for i in rng.choice(np.flatnonzero(split.target == k), n, replace=False):
                pixels = " ".join(map(str, split.images[i].ravel().tolist()))
                lines.append(f"{k},{pixels},{split.usage}")
    path = tmp_path_factory.mktemp("cli_data") / "fer_small.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(small_csv, mobilenet_imagenet_weights, tmp_path_factory):
    """``skfer train`` run once: the completed process and the model file."""
    model = tmp_path_factory.mktemp("cli_model") / "model.skfer"
    process = run_cli(
        "train", "--data", small_csv, "--backbone", "mobilenet",
        "--weights", mobilenet_imagenet_weights, "--input-size", 32,
        "--short-epochs", 1, "--long-epochs", 1, "--batch-size", 32, "--out", model,
    )  # fmt: skip
    return process, model


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """A photo with one face (scikit-image's astronaut) and a blank gray image, as PNGs."""
    skimage_data = pytest.importorskip("skimage.data")
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("cli_photos")
    face, blank = folder / "astronaut.png", folder / "blank.png"
    tf.io.write_file(str(face), tf.io.encode_png(skimage_data.astronaut()))
    tf.io.write_file(str(blank), tf.io.encode_png(np.full((120, 160, 3), 128, np.uint8)))
    return face, blank


def test_train_saves_model_and_prints_publictest_accuracy(trained):
    process, model = trained
    assert process.returncode == 0, process.stderr
    assert "PublicTest accuracy:" in process.stdout and f"({7 * N_TEST} images)" in process.stdout
    assert model.is_file()


def test_evaluate_prints_table_of_publictest(trained, small_csv):
    _, model = trained
    process = run_cli("evaluate", model, "--data", small_csv, "--quiet")
    assert process.returncode == 0, process.stderr
    header, _, row = process.stdout.strip().splitlines()
    assert "accuracy" in header and "recall happy" in header
    assert f"| model.skfer | PublicTest | {7 * N_TEST} |" in row


def test_evaluate_json_scores_the_requested_splits(trained, small_csv, capsys):
    _, model = trained
    argv = ["evaluate", str(model), "--data", str(small_csv), "--split", "PublicTest"]
    assert main([*argv, "--split", "Training", "--json", "--quiet"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["split"], r["n_samples"]) for r in results] == [
        ("PublicTest", 7 * N_TEST),
        ("Training", 7 * N_TRAIN),
    ]
    assert list(results[0]["recall_per_class"]) == list(FER2013_CLASSES)


def test_predict_json_reports_faces_and_annotates(trained, photos, tmp_path):
    _, model = trained
    face, blank = photos
    out = tmp_path / "annotated.png"
    process = run_cli("predict", model, face, blank, "--json", "--annotate", out)
    assert process.returncode == 0, process.stderr
    reports = json.loads(process.stdout)
    assert [r["image"] for r in reports] == [str(face), str(blank)]
    (found,) = reports[0]["faces"]
    assert len(found["box"]) == 4
    probabilities = found["probabilities"]
    assert sorted(probabilities) == sorted(FER2013_CLASSES)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert found["label"] == max(probabilities, key=probabilities.get)
    assert reports[1]["faces"] == []
    for index, report in enumerate(reports, start=1):
        written = tmp_path / f"annotated_{index}.png"
        assert report["annotated"] == str(written)
        assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_text_lists_faces_and_says_when_there_is_none(trained, photos, capsys):
    face, blank = photos
    assert main(["predict", str(trained[1]), str(face), str(blank), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{face}: 1 face" and lines[1].startswith("  face 1 at x=")
    assert lines[2:] == [f"{blank}: no face found"]


def test_undecodable_image_is_an_invalid_file(trained, tmp_path, capsys):
    garbage = tmp_path / "photo.png"
    garbage.write_bytes(b"not an image")
    assert main(["predict", str(trained[1]), str(garbage)]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot decode '{garbage}'") and "Traceback" not in err


@pytest.mark.parametrize("command", [None, "train", "evaluate", "predict", "reproduce"])
def test_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: skfer {command or ''}".rstrip())


def test_version(capsys):
    from skfer import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"skfer {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--backbone", "mobilenet", "--out", "m.skfer", "--data"],
        ["reproduce", "--quiet", "--data"],
        ["evaluate", "{model}", "--data"],
    ],
)
def test_missing_data_file_is_a_usage_error(argv, trained, tmp_path, capsys):
    missing = tmp_path / "no_such_fer2013.csv"
    argv = [arg.format(model=trained[1]) for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, str(missing)])
    assert exit_info.value.code == 2
    assert f"--data {missing}: no such file or folder" in capsys.readouterr().err


def test_weights_download_failure_exits_3(small_csv, tmp_path, monkeypatch, capsys):
    import keras

    def offline(file_name, origin, **kwargs):
        raise OSError(f"URL fetch failure on {origin}: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    argv = ["train", "--data", str(small_csv), "--backbone", "mobilenet", "--input-size", "32"]
    assert main([*argv, "--out", str(tmp_path / "m.skfer"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: Could not download weights from https://")
    assert err.rstrip().endswith("On the command line: --weights PATH.")


def test_truncated_model_is_an_invalid_file(trained, small_csv, tmp_path, capsys):
    data = trained[1].read_bytes()
    truncated = tmp_path / "truncated.skfer"
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(truncated), "--data", str(small_csv)]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{truncated}' is truncated or not an skfer model file")
    assert "Traceback" not in err


def test_unknown_backbone_lists_the_valid_ones(small_csv, tmp_path, capsys):
    from skfer import list_backbones

    argv = ["train", "--data", str(small_csv), "--backbone", "alexnet", "--out", "m.skfer"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--backbone 'alexnet' is unknown; choose one of: " + ", ".join(list_backbones()) in err


def test_preset_choices_match_reproduce():
    from skfer.cli import _PRESETS
    from skfer.reproduce import PRESETS

    assert _PRESETS == tuple(sorted(PRESETS))
