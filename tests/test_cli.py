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


def test_train_early_stops_on_held_out_training_and_labels_splits(trained):
    process, model = trained
    assert process.returncode == 0, process.stderr
    held_out, test, saved = process.stdout.splitlines()[-3:]  # after Keras's progress bars
    n_held_out = round(0.1 * 7 * N_TRAIN)
    assert held_out.startswith("held-out 10% of Training (early stopping) accuracy: ")
    assert held_out.endswith(f"({n_held_out} images)")
    assert test.startswith("PublicTest accuracy (test split, not used in training): ")
    assert test.endswith(f"({7 * N_TEST} images)")
    assert saved == f"saved {model}" and model.is_file()


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
    assert "note" not in results[0]
    assert results[1]["note"] == "training data of skfer train: not a test score"


def test_evaluate_says_when_test_scores_are_test_scores(trained, small_csv, capsys):
    assert main(["evaluate", str(trained[1]), "--data", str(small_csv)]) == 0
    err = capsys.readouterr().err
    assert "note: PublicTest scores are test scores only if the model never used" in err


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
    assert main(["predict", str(trained[1]), str(garbage), "--quiet"]) == 4
    first, last = capsys.readouterr().err.splitlines()
    assert first.startswith(f"error: '{garbage}' is not an image file")
    assert last == "error: 1 of 1 images failed (see above)"


def test_predict_reports_each_image_and_keeps_going(trained, photos, tmp_path, capsys):
    face, blank = photos
    fake = tmp_path / "fake.jpg"
    fake.write_text("a text file")
    argv = ["predict", str(trained[1]), str(face), str(fake), str(blank), "--json", "--quiet"]
    assert main(argv) == 4
    captured = capsys.readouterr()
    good, bad, good2 = json.loads(captured.out)
    assert [good["image"], bad["image"], good2["image"]] == [str(face), str(fake), str(blank)]
    assert len(good["faces"]) == 1 and good2["faces"] == [] and set(bad) == {"image", "error"}
    assert bad["error"].startswith(f"'{fake}' is not an image file")
    assert "function_node" not in captured.err and "Traceback" not in captured.err


def test_predict_on_an_empty_folder_is_one_error_line(trained, tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["predict", str(trained[1]), str(folder), "--quiet"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: '{folder}' is a folder without a photo (no file ending in .bmp, .gif, .jpeg, "
        f".jpg, .png in it or below it); pass photos or videos. Received: {str(folder)!r}",
        "error: 1 of 1 images failed (see above)",
    ]


def test_quiet_prints_no_tensorflow_start_up_lines(trained, tmp_path):
    garbage = tmp_path / "photo.png"
    garbage.write_bytes(b"")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [sys.executable, "-m", "skfer.cli", "predict", str(trained[1]), str(garbage), "--quiet"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=600,
    )  # fmt: skip
    assert process.returncode == 4
    assert process.stderr.splitlines() == [
        f"error: '{garbage}' is empty (0 bytes); pass a PNG, JPEG, GIF or BMP file (convert "
        f"other formats), or the pixels as an array. Received: {str(garbage)!r}",
        "error: 1 of 1 images failed (see above)",
    ]


@pytest.mark.parametrize(
    "option, message",
    [
        (
            ["--input-size", "16"],
            "needs inputs of at least 32 pixels; pass a larger input_size. Received: "
            "input_size=16 (--input-size sets input_size)",
        ),
        (["--short-epochs", "-1"], "argument --short-epochs: must be int >= 0, got '-1'"),
        (["--batch-size", "0"], "argument --batch-size: must be int >= 1, got '0'"),
        (["--long-lr", "nan"], "argument --long-lr: must be float > 0, got 'nan'"),
        (["--holdout", "1"], "argument --holdout: must be float > 0 and < 1, got '1'"),
        (["--limit-per-class", "x"], "argument --limit-per-class: must be int >= 1, got 'x'"),
        (
            ["--short-epochs", "0", "--long-epochs", "0"],
            "nothing would be trained. Received: short_epochs=0, long_epochs=0 (--short-epochs "
            "sets short_epochs; --long-epochs sets long_epochs)",
        ),
        (["--label-smoothing", "1"], "argument --label-smoothing: must be float >= 0 and < 1"),
        (["--mixup-alpha", "-0.5"], "argument --mixup-alpha: must be float >= 0, got '-0.5'"),
        (["--test-time-crops", "3"], "argument --test-time-crops: invalid choice: 3"),
        (
            ["--augment", "--flip-augment"],
            "Set one of them. Received: augmentation=True, flip_augmentation=True (--augment sets "
            "augmentation; --flip-augment sets flip_augmentation)",
        ),
        (
            ["--average-last-epochs", "5", "--long-epochs", "3"],
            "it cannot exceed long_epochs. Lower average_last_epochs, raise long_epochs, or set "
            "average_last_epochs=None. Received: average_last_epochs=5, long_epochs=3 "
            "(--average-last-epochs sets average_last_epochs; --long-epochs sets long_epochs)",
        ),
        (["--average-last-epochs", "1"], "argument --average-last-epochs: must be int >= 2"),
        (
            ["--feature-mixup-alpha", "0.4", "--augment"],
            "Received: feature_mixup_alpha=0.4, augmentation=True, unfreeze_blocks=None (every "
            "block of 'mobilenet' trains in the long phase) (--feature-mixup-alpha sets "
            "feature_mixup_alpha; --augment sets augmentation; --unfreeze-blocks sets "
            "unfreeze_blocks)",
        ),
        (
            ["--feature-mixup-alpha", "0.4"],
            "unfreeze fewer blocks than the backbone has (or use mixup_alpha on the images). "
            "Received: feature_mixup_alpha=0.4, unfreeze_blocks=None",
        ),
        (
            ["--feature-mixup-alpha", "0.4", "--unfreeze-blocks", "14"],
            "Received: feature_mixup_alpha=0.4, unfreeze_blocks=14 (every block",
        ),
    ],
)
def test_train_options_are_checked_before_loading_data(option, message, tmp_path, capsys):
    unread = tmp_path / "not_read.csv"
    unread.write_text("would fail to load\n")
    argv = ["train", "--data", str(unread), "--backbone", "mobilenet", "--out", "m.skfer"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--weights", "none", *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_invalid_data_file_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "fer.csv"
    bad.write_text("emotion,pixels\n")
    argv = ["train", "--data", str(bad), "--backbone", "mobilenet", "--weights", "none"]
    assert main([*argv, "--out", str(tmp_path / "m.skfer"), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{bad}' line 1: the CSV header lacks column(s) ['Usage']")
    assert len(err.splitlines()) == 1


def test_too_small_holdout_is_one_error_line(small_csv, tmp_path, capsys):
    argv = ["train", "--data", str(small_csv), "--backbone", "mobilenet", "--weights", "none"]
    argv += ["--limit-per-class", "1", "--out", str(tmp_path / "m.skfer"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot hold out 0.1 of 7 Training images with every class")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "raised, code, line",
    [
        (RuntimeError("boom"), 1, "error: unexpected RuntimeError: boom (a bug in skfer;"),
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (PermissionError(13, "Permission denied", "out/m.skfer"), 4, "error: [Errno 13]"),
    ],
)
def test_any_other_error_is_one_line(raised, code, line, monkeypatch, capsys):
    import skfer.cli

    def run(args):
        raise raised

    monkeypatch.setattr(skfer.cli, "_reproduce", run)
    assert main(["reproduce", "--quiet", "--data", __file__]) == code
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith(line)


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
    assert main(["evaluate", str(truncated), "--data", str(small_csv), "--quiet"]) == 4
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


def test_stacker_choices_match_the_ensemble_module():
    from skfer.cli import _STACKERS
    from skfer.ensemble import STACKERS

    assert _STACKERS == STACKERS
