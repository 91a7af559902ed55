"""Crash and resume, Ctrl-C, checkpoints of another fit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from conftest import two_class_images

from skfer import TransferCNNClassifier

SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import TINY
    from skfer import TransferCNNClassifier

    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            print("EPOCH_BEGIN", epoch, flush=True)
        def on_epoch_end(self, epoch, logs=None):
            print("EPOCH_DONE", epoch, flush=True)

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (256, 16, 16)).astype(np.uint8)
    y = np.arange(256) % 2
    params = dict(TINY, short_epochs=2, long_epochs=6, validation_fraction=0.25, patience=None,
                  checkpoint_dir={checkpoint!r})
    clf = TransferCNNClassifier(**params).fit(X, y, callbacks=[Report()])
    print("PHASES", ",".join(clf.history_["phase"]), flush=True)
    """
)


def _run(script, kill_after_epoch=None):
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if kill_after_epoch is not None and line.strip() == f"EPOCH_BEGIN {kill_after_epoch + 1}":
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=300)
    return process.returncode, lines


@pytest.mark.slow
def test_fit_killed_in_the_long_phase_resumes_from_the_last_finished_epoch(tmp_path):
    tests = os.path.dirname(__file__)
    script = SCRIPT.format(tests=tests, checkpoint=str(tmp_path / "checkpoint"))
    code, first = _run(script, kill_after_epoch=4)  # epochs 0-1 short, 2-7 long
    assert code == -signal.SIGKILL and "EPOCH_DONE 4" in first
    code, second = _run(script)
    assert code == 0, second
    begun = [int(line.split()[1]) for line in second if line.startswith("EPOCH_BEGIN")]
    assert begun == [5, 6, 7]  # neither the short phase nor epochs 2-4 again
    assert second[-1] == "PHASES " + ",".join(["short"] * 2 + ["long"] * 6)
    assert not (tmp_path / "checkpoint").exists()  # a finished fit cleans up


def test_checkpoint_of_another_fit_is_refused(tmp_path, tiny_params):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 16, 16)).astype(np.uint8)
    y = np.arange(32) % 2
    checkpoint = tmp_path / "checkpoint"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    params = {**tiny_params, "checkpoint_dir": checkpoint}
    with pytest.warns(UserWarning, match="interrupted"):
        TransferCNNClassifier(**params).fit(X, y, callbacks=[Stop()])
    with pytest.raises(ValueError, match="checkpoint of another fit"):
        TransferCNNClassifier(**{**params, "head": (4,)}).fit(X, y)


def test_ctrl_c_leaves_a_usable_estimator_with_a_warning(tiny_params):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 16, 16)).astype(np.uint8)
    y = np.arange(64) % 2

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    params = {**tiny_params, "short_epochs": 2, "long_epochs": 4, "validation_fraction": 0.25}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = TransferCNNClassifier(**params).fit(X, y, callbacks=[CtrlC()])
    assert any("interrupted by the user in the long phase" in str(w.message) for w in caught)
    assert clf.history_["phase"] == ["short", "short"]  # epoch 2 did not finish
    assert clf.predict_proba(X).shape == (64, 2)


def test_ctrl_c_before_the_long_phase_trains_keeps_the_short_phase_history(tiny_params):
    """Ctrl-C as the long phase begins, before Keras' History has started: the short phase's
    epochs stay as they were, labelled short."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 16, 16)).astype(np.uint8)
    y = np.arange(64) % 2

    class CtrlCAtSecondStart(keras.callbacks.Callback):
        starts = 0

        def on_train_begin(self, logs=None):
            self.starts += 1
            if self.starts == 2:
                raise KeyboardInterrupt

    params = {**tiny_params, "short_epochs": 2, "long_epochs": 3, "validation_fraction": 0.25}
    with pytest.warns(UserWarning, match="interrupted by the user in the long phase"):
        clf = TransferCNNClassifier(**params).fit(X, y, callbacks=[CtrlCAtSecondStart()])
    assert clf.history_["phase"] == ["short", "short"]
    assert len(clf.history_["loss"]) == 2
    assert clf.predict_proba(X).shape == (64, 2)


class _CtrlCAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_in_the_long_phase_keeps_the_better_phase(tiny_params):
    X, y = two_class_images(96, 16, darken=4)
    params = {**tiny_params, "short_epochs": 4, "validation_fraction": 0.25, "patience": 2}
    short_only = TransferCNNClassifier(**{**params, "long_epochs": 0}).fit(X, y)
    wrecking = {**params, "long_epochs": 3, "long_learning_rate": 1e3}
    with pytest.warns(UserWarning, match="interrupted by the user in the long phase"):
        clf = TransferCNNClassifier(**wrecking).fit(X, y, callbacks=[_CtrlCAtEpoch(5)])
    assert clf.history_["phase"].count("long") >= 1  # then Ctrl-C in a later long epoch
    np.testing.assert_allclose(clf.predict_proba(X), short_only.predict_proba(X), atol=1e-6)


def test_resume_inside_the_short_phase(tmp_path, tiny_params):
    X, y = two_class_images(64, 16, darken=3)
    params = {**tiny_params, "short_epochs": 3, "long_epochs": 1, "checkpoint_dir": tmp_path}

    class Begun(keras.callbacks.Callback):
        epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    with pytest.warns(UserWarning, match="interrupted by the user in the short phase"):
        TransferCNNClassifier(**params).fit(X, y, callbacks=[_CtrlCAtEpoch(1)])
    Begun.epochs = []
    clf = TransferCNNClassifier(**params).fit(X, y, callbacks=[Begun()])
    assert Begun.epochs == [2, 3]  # epochs 0 and 1 finished before Ctrl-C
    assert clf.history_["phase"] == ["short"] * 3 + ["long"]
    assert not (tmp_path / "state.json").exists()


def test_a_resumed_fit_without_random_state_keeps_its_validation_split(
    tmp_path, tiny_params, monkeypatch
):
    import skfer.classifier

    seeds = []
    split = skfer.classifier.train_test_split

    def recording_split(*args, random_state, **kwargs):
        seeds.append(random_state)
        return split(*args, random_state=random_state, **kwargs)

    monkeypatch.setattr(skfer.classifier, "train_test_split", recording_split)
    X, y = two_class_images(64, 16, darken=3)
    params = {
        **tiny_params,
        "random_state": None,
        "validation_fraction": 0.25,
        "long_epochs": 2,
        "checkpoint_dir": tmp_path,
    }
    with pytest.warns(UserWarning, match="interrupted"):
        TransferCNNClassifier(**params).fit(X, y, callbacks=[_CtrlCAtEpoch(1)])
    TransferCNNClassifier(**params).fit(X, y)
    assert len(seeds) == 2 and seeds[0] == seeds[1]
