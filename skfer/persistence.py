"""Save and load fitted skfer classifiers and stacked ensembles without pickle.

One ``.skfer`` file is a zip archive holding the Keras model in its ``.keras`` format (loaded
with ``safe_mode=True``, which refuses to run embedded code) and ``estimator.json`` with the
estimator's parameters, classes and history. A stacked ensemble's file holds each Keras
member as a ``.skfer`` file of its own, ``estimator.json`` (the stack, its experts and the
final estimator's parameters) and its weights (the MLP's, or the logistic regression's) as
``final_estimator.npz``. Unpickling, by contrast, can run arbitrary code: share models as
``.skfer`` files, not as pickles.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, LabelEncoder, StandardScaler
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from . import __version__
from .classifier import TransferCNNClassifier
from .ensemble import FERStackingClassifier, LogProbabilities, SeedAveragedMLP
from .errors import DataFileError
from .experts import ClassExpert
from .model_file import (
    FORMAT_VERSION,
    MODEL,
    STATE,
    decode_param,
    decoded_params,
    encode_param,
    json_label,
    labels_from_json,
    labels_json,
    not_a_model,
    params_json,
    write_classifier,
)

__all__ = ["FORMAT_VERSION", "RUN_ENSEMBLE", "RUN_MODELS", "load", "run_model_file", "save"]

RUN_MODELS = "models"
"""The folder of a ``skfer reproduce`` run's output that holds its saved models."""
RUN_ENSEMBLE = "ensemble.skfer"
"""The file name of a run's stacked ensemble in :data:`RUN_MODELS`."""

_MLP_ARRAYS = "final_estimator.npz"
# The public fitted attributes of MLPClassifier besides its arrays (coefs_, intercepts_,
# classes_), all JSON values.
_MLP_FITTED = (
    "n_features_in_",
    "n_layers_",
    "n_outputs_",
    "out_activation_",
    "n_iter_",
    "t_",
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
)


def _classifier_from_params(params: dict):
    """An unfitted ``TransferCNNClassifier`` from parameters written by :func:`params_json`."""
    params = decoded_params(params)
    params["head"] = tuple(params["head"])
    return TransferCNNClassifier(**params)


def save(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted ``TransferCNNClassifier`` or stacked ensemble to ``path`` (a zip file).

    The stacked ensemble is the fitted ``StackingClassifier`` of
    :func:`skfer.ensemble.make_fer_ensemble` with ``prefit=True``: each member a
    ``FrozenEstimator`` of a ``TransferCNNClassifier`` or of a ``ClassExpert`` of one, under
    an ``MLPClassifier``.

    Raises
    ------
    ValueError
        If the estimator is not fitted, a parameter cannot be written as JSON (a
        ``RandomState`` instance, say; pass an int instead), or a stack holds other
        members or another final estimator than those above.
    """
    if isinstance(estimator, StackingClassifier):
        return _save_stack(estimator, Path(path))
    return write_classifier(estimator, path)


def run_model_file(folder: str | os.PathLike) -> Path:
    """The model file that a ``skfer reproduce`` output folder recommends.

    The file that its ``results.json`` recommends (``recommended_model``: the stacked ensemble,
    or the stack's best member where the run ships that member alone), else its stacked
    ensemble (``models/ensemble.skfer``), else its best base model on the stopping part
    (``best_base_model``; runs before 2026-12-06 recorded no ``recommended_model``).
    ``folder`` may also be the run's ``models`` folder itself.

    Raises
    ------
    FileNotFoundError
        If ``folder`` holds none of them, naming what was looked for.
    """
    folder = Path(folder)
    run = (
        folder.parent
        if folder.name == RUN_MODELS and not (folder / RUN_MODELS).is_dir()
        else folder
    )
    try:
        results = json.loads((run / "results.json").read_text())
    except (OSError, ValueError):
        results = {}
    results = results if isinstance(results, dict) else {}
    files, best = results.get("models"), results.get("best_base_model")
    best_file = files.get(best) if isinstance(files, dict) and isinstance(best, str) else None
    for name in (results.get("recommended_model"), RUN_ENSEMBLE, best_file):
        if isinstance(name, str) and (run / RUN_MODELS / name).is_file():
            return run / RUN_MODELS / name
    raise FileNotFoundError(
        f"{str(folder)!r} is a folder but not the output of a skfer reproduce run that saved "
        f"models: it has no {RUN_MODELS}/{RUN_ENSEMBLE} and no results.json naming a saved "
        f"model. Pass an .skfer file, or the --out folder of skfer reproduce. "
        f"Received: {str(folder)!r}"
    )


def load(path: str | os.PathLike):
    """Load a classifier or stacked ensemble written by :func:`save` (or ``clf.save``).

    ``path`` may also be the output folder of ``skfer reproduce``: the model it recommends is
    loaded (:func:`run_model_file`). The Keras models load with
    ``safe_mode=True``. A truncated file, a file that is not a ``.skfer`` archive (a Keras
    ``.keras`` file, a pickle or joblib file, ...) raises :class:`~skfer.errors.DataFileError`
    (a ``ValueError``) naming the problem, as does one written by an skfer with another file
    format.
    """
    path = Path(path)
    if path.is_dir():
        path = run_model_file(path)
    if not path.exists():
        raise FileNotFoundError(f"No skfer model at {str(path)!r}.")
    stacks = _stack_classes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if STATE not in names:
                raise not_a_model(path, names)
            state = json.loads(archive.read(STATE))
            if state.get("format") != FORMAT_VERSION or state.get("class") not in (
                "TransferCNNClassifier",
                *stacks,
            ):
                raise DataFileError(
                    f"{str(path)!r} was written by skfer {state.get('skfer_version')!r} in file "
                    f"format {state.get('format')!r}; this skfer ({__version__}) reads format "
                    f"{FORMAT_VERSION}. Load it with the skfer version that wrote it, or retrain. "
                    f"Received: format={state.get('format')!r}, class={state.get('class')!r}"
                )
            if state["class"] in stacks:
                return _load_stack(archive, state, stacks[state["class"]], path)
            if MODEL not in names:
                raise not_a_model(path, names)
            with tempfile.TemporaryDirectory() as directory:
                archive.extract(MODEL, directory)
                model = keras.models.load_model(Path(directory) / MODEL, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        raise not_a_model(path, error=error) from error
    estimator = _classifier_from_params(state["params"])
    estimator.classes_ = np.asarray(state["classes"], dtype=np.dtype(state["classes_dtype"]))
    estimator.n_features_in_ = state["n_features_in_"]
    estimator.image_shape_ = tuple(state["image_shape_"])
    estimator.history_ = state["history_"]
    estimator.long_phase_start_ = state["long_phase_start_"]
    # Files written before average_last_epochs existed have none.
    estimator.weight_average_ = state.get("weight_average_")
    estimator._flat_input = state["flat_input"]
    estimator.model_ = model
    return estimator


# ---------------------------------------------------------------------- stacked ensembles


def _stack_classes() -> dict:
    """The classes of the stacks that :func:`save` writes, by name."""
    return {
        "StackingClassifier": StackingClassifier,
        "FERStackingClassifier": FERStackingClassifier,
    }


def _unsupported_member(name: str, kind: str) -> ValueError:
    return ValueError(
        "Cannot save the stack: skfer saves TransferCNNClassifier members and ClassExperts of "
        f"a TransferCNNClassifier only; leave member {name!r} out of the stack, or save the "
        f"members one by one. Received: {name!r} is a {kind}"
    )


def _member_state(name: str, frozen, file: str) -> tuple[dict, object]:
    """The JSON state of one member of a stack, and the ``TransferCNNClassifier`` to be
    saved as ``file``; ValueError for a member that :func:`save` cannot write."""
    if not isinstance(frozen, FrozenEstimator):
        raise ValueError(
            f"Cannot save the stack: its member {name!r} is not a fitted model wrapped in "
            "sklearn.frozen.FrozenEstimator (a make_fer_ensemble(..., prefit=False) stack holds "
            "templates that it refits). Build the stack with make_fer_ensemble(..., "
            "prefit=True) from fitted members (this stack's are its named_estimators_) and fit "
            f"it on held-out data, or save the fitted members one by one. Received: {name!r} "
            f"is a {type(frozen).__name__}"
        )
    member = frozen.estimator
    if type(member) is TransferCNNClassifier:
        return {"name": name, "type": "TransferCNNClassifier", "file": file}, member
    if type(member) is not ClassExpert:
        raise _unsupported_member(name, type(member).__name__)
    check_is_fitted(member, "estimator_")
    template = member.estimator
    for inner in (member.estimator_, template):
        if inner is not None and type(inner) is not TransferCNNClassifier:
            raise _unsupported_member(name, f"ClassExpert of a {type(inner).__name__}")
    state = {
        "name": name,
        "type": "ClassExpert",
        "file": file,
        "positive_class": labels_json(np.asarray([member.positive_class])),
        "classes": labels_json(member.classes_),
        "class_weight": encode_param(member.class_weight),
        "stopping_metric": member.stopping_metric,
        "template": None if template is None else params_json(template.get_params()),
    }
    return state, member.estimator_


def _class_expert(state: dict, fitted):
    """The ``ClassExpert`` of :func:`_member_state`'s ``state`` around ``fitted``."""
    template = state["template"]
    expert = ClassExpert(
        None if template is None else _classifier_from_params(template),
        labels_from_json(state["positive_class"])[0],
        class_weight=decode_param(state["class_weight"]),
        stopping_metric=state["stopping_metric"],
    )
    expert.estimator_ = fitted
    expert.classes_ = labels_from_json(state["classes"])
    return expert


def _two_steps_of(steps, first_types: tuple, last_types: tuple) -> bool:
    """Whether a pipeline's ``steps`` are exactly two, of one of ``first_types`` then one of
    ``last_types`` (exact types: a subclass may hold state that saving would lose)."""
    return len(steps) == 2 and type(steps[0][1]) in first_types and type(steps[1][1]) in last_types


def _final_state(final) -> tuple[dict, dict]:
    """The final estimator's state (JSON) and arrays (name to array, for an ``.npz`` file): an
    MLPClassifier, a :class:`~skfer.ensemble.SeedAveragedMLP`, or the ``'standardized_mlp'``
    or ``'logistic'`` pipeline of :func:`~skfer.ensemble.make_stacker`."""
    steps = final.steps if type(final) is Pipeline else ()
    if _two_steps_of(steps, (StandardScaler,), (MLPClassifier, SeedAveragedMLP)):
        (_, scaler), (_, mlp) = steps
        state, arrays = _final_state(mlp)
        arrays.update({f"scaler_{name}": getattr(scaler, name) for name in _SCALER_ARRAYS})
        state = {
            "kind": "standardized",
            "step_names": [name for name, _ in steps],
            "scaler_params": params_json(scaler.get_params()),
            "n_features_in_": scaler.n_features_in_,
            "final": state,
        }
        return state, arrays
    if type(final) is MLPClassifier:
        return _mlp_state(final)
    if type(final) is SeedAveragedMLP:
        states, arrays = [], {}
        for number, mlp in enumerate(final.estimators_):
            state, mlp_arrays = _mlp_state(mlp)
            states.append(state)
            arrays.update({f"mlp{number}_{name}": value for name, value in mlp_arrays.items()})
        state = {
            "kind": "seed_averaged_mlp",
            "params": params_json(final.get_params()),
            "n_features_in_": final.n_features_in_,
            "mlps": states,
        }
        return state, arrays
    if _two_steps_of(steps, (LogProbabilities,), (LogisticRegression,)):
        (_, floor), (_, logistic) = steps
        arrays = {
            name: getattr(logistic, name) for name in ("classes_", "coef_", "intercept_", "n_iter_")
        }
        state = {
            "kind": "logistic",
            "step_names": [name for name, _ in steps],
            "floor": floor.floor,
            "params": params_json(logistic.get_params()),
            "n_features_in_": logistic.n_features_in_,
        }
        return state, arrays
    raise ValueError(
        "Cannot save the stack: its final estimator is neither an MLPClassifier, a "
        "SeedAveragedMLP nor a pipeline of make_stacker(kind='standardized_mlp') or "
        "make_stacker(kind='logistic'); skfer saves the "
        f"stacks of make_fer_ensemble. Received: {final!r}"
    )


def _fitted_final(state: dict, arrays):
    """The final estimator of :func:`_final_state`'s ``state`` (files without ``kind`` hold
    an MLP)."""
    kind = state.get("kind", "mlp")
    if kind == "mlp":
        return _fitted_mlp(state, arrays)
    if kind == "standardized":
        scaler = StandardScaler(**decoded_params(state["scaler_params"]))
        for name in _SCALER_ARRAYS:
            setattr(scaler, name, arrays[f"scaler_{name}"])
        scaler.n_features_in_ = state["n_features_in_"]
        mlp = _fitted_final(state["final"], arrays)
        return Pipeline(list(zip(state["step_names"], (scaler, mlp), strict=True)))
    if kind == "seed_averaged_mlp":
        params = decoded_params(state["params"])
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        averaged = SeedAveragedMLP(**params)
        averaged.estimators_ = [
            _fitted_mlp(mlp, {name: arrays[f"mlp{number}_{name}"] for name in _mlp_names(mlp)})
            for number, mlp in enumerate(state["mlps"])
        ]
        averaged.classes_ = averaged.estimators_[0].classes_
        averaged.n_features_in_ = state["n_features_in_"]
        averaged.n_iter_ = max(mlp.n_iter_ for mlp in averaged.estimators_)
        return averaged
    logistic = LogisticRegression(**decoded_params(state["params"]))
    for name in ("classes_", "coef_", "intercept_", "n_iter_"):
        setattr(logistic, name, arrays[name])
    logistic.n_features_in_ = state["n_features_in_"]
    floor = LogProbabilities(state["floor"])
    floor.n_features_in_ = state["n_features_in_"]
    return Pipeline(list(zip(state["step_names"], (floor, logistic), strict=True)))


_SCALER_ARRAYS = ("mean_", "var_", "scale_", "n_samples_seen_")
"""The fitted array attributes of the ``'standardized_mlp'`` stacker's StandardScaler."""


def _npz_bytes(arrays: dict) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file, without pickle."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def _mlp_state(mlp: MLPClassifier) -> tuple[dict, dict]:
    """An MLP's parameters and fitted scalars (JSON), and its arrays by name."""
    arrays = {"classes_": mlp.classes_}
    for layer, (coefs, intercepts) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        arrays[f"coefs_{layer}"] = coefs
        arrays[f"intercepts_{layer}"] = intercepts
    state = {
        "params": params_json(mlp.get_params()),
        **{name: getattr(mlp, name) for name in _MLP_FITTED},
    }
    return state, arrays


def _mlp_names(state: dict) -> list[str]:
    """The names of the arrays of the MLP whose :func:`_mlp_state` is ``state``."""
    layers = range(state["n_layers_"] - 1)
    return ["classes_", *(f"{kind}_{n}" for n in layers for kind in ("coefs", "intercepts"))]


def _fitted_mlp(state: dict, arrays) -> MLPClassifier:
    """The MLPClassifier of :func:`_mlp_state`, with the fitted attributes ``predict_proba``
    reads (the private one, ``_label_binarizer``, in :func:`_set_label_coders`)."""
    params = decoded_params(state["params"])
    if isinstance(params["hidden_layer_sizes"], list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    mlp = MLPClassifier(**params)
    for name in _MLP_FITTED:
        setattr(mlp, name, state[name])
    mlp.classes_ = arrays["classes_"]
    mlp.coefs_ = [arrays[f"coefs_{layer}"] for layer in range(mlp.n_layers_ - 1)]
    mlp.intercepts_ = [arrays[f"intercepts_{layer}"] for layer in range(mlp.n_layers_ - 1)]
    return mlp


def _set_label_coders(stack) -> None:
    """Set the two private attributes of scikit-learn (1.9) that ``fit`` alone sets and that
    prediction reads: the stack's ``_label_encoder`` (read by ``predict`` and
    ``predict_proba``) and its MLP's ``_label_binarizer`` (read by ``predict``). ``fit`` fits
    them on the labels; fitted on the saved classes, they are the same."""
    # The only private scikit-learn attributes that skfer sets.
    stack._label_encoder = LabelEncoder().fit(stack.classes_)
    final = stack.final_estimator_
    if type(final) is Pipeline:  # the 'standardized_mlp' stacker: its MLPs are the last step
        final = final.steps[-1][1]
    for mlp in getattr(final, "estimators_", [final]):
        if type(mlp) is MLPClassifier:
            mlp._label_binarizer = LabelBinarizer().fit(mlp.classes_)


def _save_stack(stack: StackingClassifier, path: Path) -> Path:
    """:func:`save` for a fitted ``prefit=True`` stack: each member's Keras model as a
    ``.skfer`` file inside ``path``."""
    check_is_fitted(stack, "final_estimator_")
    if type(stack) not in _stack_classes().values():
        raise ValueError(
            "Cannot save the stack: skfer saves StackingClassifier and FERStackingClassifier "
            "(make_fer_ensemble) stacks, not subclasses; build it with make_fer_ensemble. "
            f"Received: {type(stack).__name__}"
        )
    members, models = [], []
    for number, (name, frozen) in enumerate(stack.estimators):
        member_state, model = _member_state(name, frozen, f"members/{number}.skfer")
        members.append(member_state)
        models.append(model)
    final_state, final_arrays = _final_state(stack.final_estimator_)
    final_bytes = _npz_bytes(final_arrays)
    params = stack.get_params(deep=False)
    del params["estimators"], params["final_estimator"]
    state = {
        "format": FORMAT_VERSION,
        "skfer_version": __version__,
        "class": type(stack).__name__,
        "params": params_json(params),
        "classes": labels_json(stack.classes_),
        "stack_method_": list(stack.stack_method_),
        "members": members,
        "final_estimator": final_state,
    }
    text = json.dumps(state, default=json_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(STATE, text)
            archive.writestr(_MLP_ARRAYS, final_bytes)
            for member, model in zip(members, models, strict=True):
                archive.write(save(model, Path(directory) / member["file"]), member["file"])
    return path


def _load_stack(archive: zipfile.ZipFile, state: dict, stack_class, path: Path):
    """:func:`load` for the file of a stack: ``archive``, whose ``estimator.json`` is
    ``state``, holds a ``stack_class``."""
    missing = sorted(
        {_MLP_ARRAYS, *(m["file"] for m in state["members"])} - set(archive.namelist())
    )
    if missing:
        raise DataFileError(
            f"{str(path)!r} is an skfer ensemble file without {missing}; save the ensemble "
            f"again. Received: {sorted(archive.namelist())[:5]}"
        )
    members = []
    with tempfile.TemporaryDirectory() as directory:
        for member in state["members"]:
            model = load(archive.extract(member["file"], directory))
            if member["type"] == "ClassExpert":
                model = _class_expert(member, model)
            members.append((member["name"], FrozenEstimator(model)))
    with np.load(io.BytesIO(archive.read(_MLP_ARRAYS)), allow_pickle=False) as arrays:
        mlp = _fitted_final(state["final_estimator"], arrays)
    stack = stack_class(members, final_estimator=clone(mlp), **decoded_params(state["params"]))
    stack.estimators_ = [frozen for _, frozen in members]
    stack.named_estimators_ = Bunch(**dict(members))
    stack.stack_method_ = state["stack_method_"]
    stack.classes_ = labels_from_json(state["classes"])
    stack.final_estimator_ = mlp
    _set_label_coders(stack)
    return stack
