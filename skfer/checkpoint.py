"""Crash-safe training: the state of a two-phase fit on disk, so that ``fit`` can resume.

Per phase, Keras' ``BackupAndRestore`` keeps the model and optimiser after every epoch; skfer
adds what Keras does not know: the fit's seed (so a resumed fit holds out the same validation
images), which phases are finished (with the weights at their end), the
per-epoch history and a fingerprint of the data and parameters, so a checkpoint is never
resumed by a different fit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras

__all__ = ["TrainingCheckpoint"]

_STATE = "state.json"


class _EpochRecorder(keras.callbacks.Callback):
    """Writes each finished epoch's metrics to the checkpoint's state."""

    def __init__(self, checkpoint: TrainingCheckpoint, phase: str):
        super().__init__()
        self.checkpoint = checkpoint
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        partial = self.checkpoint.state.setdefault("partial", {"phase": self.phase, "epochs": {}})
        partial["epochs"][str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
        self.checkpoint.write()


class TrainingCheckpoint:
    """The on-disk state of one fit in ``directory``.

    Parameters
    ----------
    directory : path
        Where the state lives; created if needed.
    fingerprint : str
        Digest of the data and parameters of the fit; a checkpoint of another fit is an error.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / _STATE
        state = json.loads(path.read_text()) if path.exists() else None
        if state is not None and state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint_dir {str(self.directory)!r} holds the checkpoint of another fit "
                f"(other data or parameters); delete it or choose another directory. "
                f"Received: fingerprint {fingerprint[:12]}, "
                f"stored {str(state.get('fingerprint'))[:12]}"
            )
        self.state = state or {"fingerprint": fingerprint, "finished": []}
        self.write()

    def write(self) -> None:
        """Save the state atomically (a crash mid-write leaves the previous one)."""
        temporary = self.directory / (_STATE + ".tmp")
        temporary.write_text(json.dumps(self.state))
        os.replace(temporary, self.directory / _STATE)

    def stored_seed(self, seed: int) -> int:
        """The seed of the checkpointed fit (its validation split, shuffles, initialisation);
        ``seed`` is stored as that seed when the checkpoint is new."""
        if "seed" not in self.state:
            self.state["seed"] = int(seed)
            self.write()
        return self.state["seed"]

    def restore_finished_phase(self, model: keras.Model, phase: str, *, verbose: int) -> bool:
        """If ``phase`` already finished, load its end weights into ``model``; say so."""
        if phase not in self.state["finished"]:
            return False
        model.load_weights(self.directory / f"after_{phase}.weights.h5")
        if verbose:
            print(f"[skfer] resumed: the {phase} phase had finished ({self.directory})")
        return True

    def history(self) -> dict[str, list]:
        """The history at the end of the last finished phase."""
        return {key: list(values) for key, values in self.state["history"].items()}

    def callbacks(
        self, history: dict[str, list], phase: str, *, verbose: int
    ) -> list[keras.callbacks.Callback]:
        """Keras callbacks that back up ``phase`` after every epoch.

        Epochs of ``phase`` recorded before a crash are appended to ``history``.
        """
        partial = self.state.get("partial")
        if partial and partial["phase"] == phase:
            for epoch, logs in sorted(partial["epochs"].items(), key=lambda item: int(item[0])):
                if int(epoch) != len(history["phase"]):
                    continue
                for key, value in logs.items():
                    history.setdefault(key, []).append(value)
                history["phase"].append(phase)
            if verbose:
                print(f"[skfer] resuming the {phase} phase from {self.directory}")
        else:
            self.state["partial"] = {"phase": phase, "epochs": {}}
        backup = keras.callbacks.BackupAndRestore(str(self.directory / f"backup_{phase}"))
        return [backup, _EpochRecorder(self, phase)]

    def finish_phase(self, model: keras.Model, phase: str, history: dict[str, list]) -> None:
        """Record that ``phase`` finished, with the model's weights and history at its end."""
        model.save_weights(self.directory / f"after_{phase}.weights.h5")
        self.state["finished"].append(phase)
        self.state["history"] = history
        self.state.pop("partial", None)
        self.write()

    def remove(self) -> None:
        """Delete the checkpoint's files, and ``directory`` itself if nothing else is there."""
        for path in self.directory.glob("after_*.weights.h5"):
            path.unlink()
        for path in self.directory.glob("backup_*"):
            shutil.rmtree(path, ignore_errors=True)
        (self.directory / _STATE).unlink(missing_ok=True)
        if not any(self.directory.iterdir()):
            self.directory.rmdir()
