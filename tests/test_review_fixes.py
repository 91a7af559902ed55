"""Fixes from the 0.2.0 review: each test fails without its fix.

Nothing here trains, builds a backbone or downloads: the estimator tests stop in parameter
checking, and a guard fails the test if ``fit`` gets as far as building a model or fetching
weights.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from skfer.cli import build_parser

SEED_RANGE = "0..4294967295"


# --------------------------------------------------------------- 1. --seed is range-checked

ARGV = {
    "train": ["train", "--data", "fer.csv", "--backbone", "mobilenet", "--out", "m.skfer"],
    "reproduce": ["reproduce"],
}


@pytest.mark.parametrize("command", sorted(ARGV))
@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5", "x"])
def test_invalid_seed_is_a_usage_error_naming_the_range(command, seed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*ARGV[command], "--seed", seed])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --seed: must be an integer in {SEED_RANGE}" in err
    assert f"got {seed!r}" in err and "Traceback" not in err


@pytest.mark.parametrize("command", sorted(ARGV))
@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seed_range_ends_are_accepted(command, seed):
    assert build_parser().parse_args([*ARGV[command], "--seed", str(seed)]).seed == seed


# --------------------------------------------------------------- 2. NaN is not in an interval


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if ``fit`` builds a model or fetches weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("fit got past parameter checking")

    monkeypatch.setattr("skfer.classifier.build_transfer_model", refuse)
    monkeypatch.setattr("skfer.backbones.fetch_weights", refuse)


@pytest.mark.parametrize(
    "value", [math.nan, np.float32("nan"), np.float64("nan"), math.inf, -math.inf]
)
def test_intervals_hold_no_nan_or_infinity(value):
    from skfer.params import Interval

    for interval in (
        Interval(float, None, None),
        Interval(float, 0, None, closed="neither"),
        Interval(float, 0, 1, closed="left"),
        Interval(float, None, 1),
    ):
        assert value not in interval, interval
    assert 0.5 in Interval(float, 0, 1) and 10**400 in Interval(int, 0, None)


@pytest.mark.parametrize("param", ["dropout", "short_learning_rate", "long_learning_rate"])
def test_nan_parameter_fails_in_parameter_checking(param, tiny_params, no_work):
    from skfer import TransferCNNClassifier

    clf = TransferCNNClassifier(**{**tiny_params, param: float("nan")})
    X, y = np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=rf"^{param} must be a number .* Received: {param}=nan$"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


# --------------------------------------------------------------- 3. pinned URLs, WeightsError


def _weight_sources():
    from skfer.backbones import get_backbone, list_backbones

    for name in list_backbones():
        for key, source in get_backbone(name).weights.items():
            for item in (source, *source.companions):
                yield f"{name}/{key}/{item.file_name}", item


def test_github_weight_urls_point_at_a_commit():
    """A raw GitHub URL of a hash-pinned file names a commit, never a moving branch."""
    raw = re.compile(
        r"https://(?:raw\.githubusercontent\.com/[^/]+/[^/]+|github\.com/[^/]+/[^/]+/raw)/([^/]+)/"
    )
    checked = 0
    for label, source in _weight_sources():
        match = raw.match(source.url)
        if match:
            assert re.fullmatch("[0-9a-f]{40}", match.group(1)), (label, source.url)
            checked += 1
    assert checked >= 3  # mobilenet_face, and mobilenet_vggface2's json and bin


def test_face_model_urls_use_the_pinned_commit():
    from skfer.backbones import HUMAN_MODELS_COMMIT, get_backbone

    source = get_backbone("mobilenet_vggface2").weights["vggface2"]
    assert re.fullmatch("[0-9a-f]{40}", HUMAN_MODELS_COMMIT)
    for item in (source, *source.companions):
        assert f"/human-models/{HUMAN_MODELS_COMMIT}/models/{item.file_name}" in item.url
        assert "/HEAD/" not in item.url


def test_one_except_catches_download_and_file_errors(tmp_path):
    from skfer.backbones import WeightsDownloadError, WeightsFileError, get_backbone
    from skfer.errors import WeightsError

    assert issubclass(WeightsDownloadError, WeightsError) and issubclass(
        WeightsDownloadError, OSError
    )
    assert issubclass(WeightsFileError, WeightsError) and issubclass(WeightsFileError, ValueError)

    def offline():
        raise WeightsDownloadError("offline")

    caught = []
    for fail in (
        lambda: get_backbone("mobilenet").resolve_weights(tmp_path / "absent.h5"),
        offline,
    ):
        try:
            fail()
        except WeightsError as error:
            caught.append(type(error))
    assert caught == [WeightsFileError, WeightsDownloadError]


# --------------------------------------------------------------- 4. folded BatchNorm


def test_only_mobilenet_vggface2_has_folded_batchnorm():
    """It and its lower nine blocks alone, which load the same weight file."""
    from skfer.backbones import get_backbone, list_backbones

    folded = [name for name in list_backbones() if get_backbone(name).folded_batchnorm]
    assert folded == ["mobilenet_vggface2", "mobilenet_vggface2_block9"]


def test_batchnorm_training_on_folded_batchnorm_is_refused(no_work):
    from skfer import TransferCNNClassifier

    clf = TransferCNNClassifier("mobilenet_vggface2", batchnorm_training=True, verbose=0)
    X, y = np.zeros((4, 32, 32), np.uint8), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="fold BatchNorm") as error:
        clf.fit(X, y)
    assert "Keep batchnorm_training=False" in str(error.value)
    assert not hasattr(clf, "model_")


def test_batchnorm_training_allowed_with_random_or_unfolded_weights():
    from skfer import TransferCNNClassifier

    for backbone, weights in [("mobilenet_vggface2", None), ("mobilenet", "default")]:
        clf = TransferCNNClassifier(backbone, weights=weights, batchnorm_training=True)
        assert clf._check_params().name == backbone


# --------------------------------------------------------------- 5. default data folder


@pytest.fixture
def no_skfer_env(monkeypatch, tmp_path):
    """No SKFER_* variables, a fresh home folder, and a package outside any checkout."""
    import skfer.paths

    monkeypatch.delenv("SKFER_HOME", raising=False)
    monkeypatch.delenv("SKFER_SHARED_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(skfer.paths, "_CHECKOUT", tmp_path / "site-packages")
    return tmp_path


def test_skfer_home_prefers_skfer_home_then_shared_dir(no_skfer_env, monkeypatch):
    from skfer.paths import skfer_home

    monkeypatch.setenv("SKFER_SHARED_DIR", str(no_skfer_env / "shared"))
    assert skfer_home() == no_skfer_env / "shared"
    monkeypatch.setenv("SKFER_HOME", str(no_skfer_env / "skfer_home"))
    assert skfer_home() == no_skfer_env / "skfer_home"
    assert skfer_home({}) == no_skfer_env / "home" / "skfer"


def test_skfer_home_defaults_to_home_folder_outside_a_checkout(no_skfer_env):
    from skfer.paths import skfer_home

    (no_skfer_env / "shared").mkdir()  # beside site-packages, not a checkout: ignored
    assert skfer_home() == Path.home() / "skfer" == no_skfer_env / "home" / "skfer"


def test_skfer_home_uses_shared_beside_an_editable_checkout(no_skfer_env, monkeypatch):
    import skfer.paths

    checkout = no_skfer_env / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("[project]\nname = 'skfer'\n")
    monkeypatch.setattr(skfer.paths, "_CHECKOUT", checkout)
    assert skfer.paths.skfer_home() == no_skfer_env / "home" / "skfer"  # no shared/ yet
    (no_skfer_env / "shared").mkdir()
    assert skfer.paths.skfer_home() == no_skfer_env / "shared"


def test_reproduce_defaults_follow_skfer_home(no_skfer_env, monkeypatch):
    home = no_skfer_env / "data_home"
    monkeypatch.setenv("SKFER_HOME", str(home))
    args = build_parser().parse_args(["reproduce"])
    assert args.data == str(home / "data/fer2013/fer2013.csv.gz")
    assert args.weights_dir == str(home / "weights")
    explicit = build_parser().parse_args(["reproduce", "--data", "x.csv", "--weights-dir", "w"])
    assert (explicit.data, explicit.weights_dir) == ("x.csv", "w")
