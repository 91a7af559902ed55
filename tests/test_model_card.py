"""``OUT/MODEL_CARD.md`` (:func:`skfer.model_card.write_model_card`) from hand-built documents."""

from __future__ import annotations

import re

import pytest

from skfer.datasets import FER2013_CLASSES
from skfer.ferplus import FERPLUS_CLASSES
from skfer.model_card import write_model_card

FACE = "MobileNet 1.0 (face-trained, VGGFace2), frozen"
CONTROL = "MobileNet 0.25 (random init, control)"
SECTIONS = (
    "## Models",
    "## Data",
    "## Splits and protocol",
    "## Metrics",
    "## Intended use",
    "## Limits",
    "## Licences of the weights",
)


def row(model, split, accuracy, interval, recalls, classes=FER2013_CLASSES, **extra) -> dict:
    """One row of ``results``, as :func:`skfer.metrics.evaluate` writes it."""
    n = len(classes)
    return {
        "model": model,
        "split": split,
        "n_samples": 280 if split == "PublicTest" else 250,
        "accuracy": accuracy,
        "precision_macro": 0.5,
        "recall_macro": 0.55,
        "f1_macro": 0.52,
        "recall_per_class": dict(zip(classes, recalls, strict=True)),
        "confusion_matrix": [[10 * (k + 1) if i == k else 0 for i in range(n)] for k in range(n)],
        **({"accuracy_interval": interval, "confidence": 0.95} if interval else {}),
        **extra,
    }


RECALLS = (0.57, 0.48, 0.38, 0.89, 0.57, 0.79, 0.68)  # fear lowest


def full_document() -> dict:
    """A cpu-like run: two base models, the ensemble, the peer row, two test views."""
    views = ("PublicTest", "PublicTest without Training copies")
    paired = {
        "difference": 0.0056,
        "interval": [-0.0022, 0.0139],
        "mcnemar_p_value": 0.19,
        "a_only_correct": 117,
        "b_only_correct": 97,
        "n_samples": 280,
        "confidence": 0.95,
    }
    return {
        "preset": {
            "name": "cpu",
            "description": "two tiny models",
            "base_models": [
                {"label": FACE, "params": {"backbone": "mobilenet_vggface2"}},
                {"label": CONTROL, "params": {"backbone": "mobilenet", "weights": None}},
                {"label": "MobileNet 0.25 (ImageNet)", "params": {"backbone": "mobilenet"}},
            ],
            "train_per_class": None,
            "stop_fraction": 0.05,
            "stack_fraction": 0.1,
        },
        "random_state": 0,
        "dataset": "fer2013",
        "protocol": {
            "training_images": 28709,
            "conflicting_dropped": 107,
            "training_copies": 2164,
            "test_images_with_a_training_copy": {"PublicTest": 30},
            "fit": 24302,
            "stop": 1433,
            "stack": 2867,
        },
        "stop_accuracy": {FACE: 0.6560, CONTROL: 0.2540},
        "failures": [],
        "best_base_model": FACE,
        "member_selection": {"members": [FACE, "expert happy"]},
        "ensemble_minus_best_member": {views[0]: paired, views[1]: {**paired, "n_samples": 250}},
        "stacking_cv": {
            "ensemble_cv_accuracy": 0.6603,
            "best_member": FACE,
            "best_member_accuracy": 0.6536,
            "difference": 0.0067,
            "images": 2867,
            "paired": {**paired, "difference": 0.0066, "n_samples": 2867},
        },
        "models": {FACE: "base_model_1.skfer", "ensemble (MLP stack)": "ensemble.skfer"},
        "results": [
            row(FACE, views[0], 0.6397, [0.6239, 0.6553], RECALLS),
            row("ensemble (MLP stack)", views[0], 0.6645, [0.6492, 0.6804], RECALLS),
            row("peer: fer mini-Xception", views[0], 0.6534, [0.6381, 0.6687], RECALLS),
            row(FACE, views[1], 0.6277, [0.6108, 0.6446], RECALLS),
            row("ensemble (MLP stack)", views[1], 0.6497, [0.6331, 0.6655], RECALLS),
        ],
    }


def test_the_card_has_every_section_with_the_runs_numbers(tmp_path):
    out = tmp_path / "runs" / "cpu"
    path = write_model_card(out / "MODEL_CARD.md", full_document(), title="cpu", data="fer.csv")
    assert path == out / "MODEL_CARD.md"
    card = path.read_text()
    assert card.startswith("# Model card: skfer reproduce --preset cpu\n")
    positions = [card.index(f"\n{heading}\n") for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "### PublicTest\n" in card and "### PublicTest without Training copies\n" in card
    assert "| ensemble (MLP stack) | 280 | 0.6645 [0.6492, 0.6804] | 0.5500 | 0.5200 |" in card
    assert f"| {FACE} | 250 | 0.6277 [0.6108, 0.6446] |" in card
    assert "- PublicTest: ensemble \u2212 best member: +0.0056 [\u22120.0022, +0.0139]" in card
    assert "the stack 0.6603, its best member" in card
    assert "paired on the stacking part: stack \u2212 best member: +0.0066 [" in card
    assert "of 2867)" in card
    models = (out / "models").as_posix()
    assert f'skfer.load("{models}/ensemble.skfer")' in card
    assert f"skfer predict {models}/ensemble.skfer photo.jpg" in card
    assert "**fit** 24302" in card and "**stop** 1433 (5%" in card and "**stack** 2867 (10%" in card
    assert "107 Training images dropped" in card and "PublicTest (280 images; 30 with" in card
    assert "ICML 2013" in card and "research use" in card and "Read from `fer.csv`." in card
    assert "Not for decisions about people" in card and "contested" in card
    assert "- Lowest recall: **fear** (0.3800 on PublicTest)" in card
    assert "| fear | 0.3800 | 0.3800 | 30 |" in card  # recall per view, PublicTest images
    assert "Demographic biases are unknown" in card and "48x48" in card


def test_the_licences_name_the_terms_of_each_weight_source_used(tmp_path):
    card = write_model_card(tmp_path / "MODEL_CARD.md", full_document()).read_text()
    licences = card[card.index("## Licences of the weights") :]
    (vggface2,) = [line for line in licences.splitlines() if "`mobilenet_vggface2`" in line]
    assert "VGGFace2" in vggface2 and "research use only" in vggface2
    (imagenet,) = [line for line in licences.splitlines() if "`imagenet` weights" in line]
    assert imagenet.startswith("- `mobilenet`, ") and "ImageNet" in imagenet
    assert "non-commercial research" in imagenet
    assert "- `mobilenet`, random initialisation: no pretrained weights." in licences
    assert "mini-Xception (MIT)" in licences


def test_a_local_weight_file_is_known_by_its_published_name(tmp_path):
    document = full_document()
    document["preset"]["base_models"] = [
        {"label": "a", "params": {"backbone": "mobilenet_vggface2", "weights": "/w/faceres.json"}},
        {"label": "b", "params": {"backbone": "mobilenet", "weights": "/w/mine.h5"}},
        {"label": "c", "params": {"backbone": "not_registered"}},
    ]
    licences = write_model_card(tmp_path / "card.md", document).read_text().split("## Licences")[1]
    assert "`mobilenet_vggface2`, `vggface2` weights: " in licences
    assert "`mobilenet` with the weights '/w/mine.h5': their terms are not known" in licences
    assert "`not_registered` (not a registered backbone)" in licences


def test_a_run_that_ships_its_best_member_says_so_and_recommends_its_file(tmp_path):
    document = full_document()
    stack = "stack not shipped (MLP stack)"
    document["ensemble_shipped"] = {
        "ships": "best member",
        "rule": "the stack where its 5-fold CV accuracy exceeds ..., else that member alone",
        "stack_cv_accuracy": 0.6501,
        "best_member": FACE,
        "best_member_accuracy": 0.6536,
    }
    paired = document["ensemble_minus_best_member"]["PublicTest"]
    document["stack_minus_best_member"] = {"PublicTest": {**paired, "difference": -0.0064}}
    document["models"] = {
        FACE: "base_model_1.skfer",
        stack: "stack_not_shipped.skfer",
        "ensemble (MLP stack)": "base_model_1.skfer",
    }
    card = write_model_card(tmp_path / "MODEL_CARD.md", document).read_text()
    shipped = "| `base_model_1.skfer` | ensemble (MLP stack) | its best member alone"
    assert f"{shipped} ({FACE}) |" in card
    assert f"| `stack_not_shipped.skfer` | {stack} | n/a (trained on the stacking part) |" in card
    assert (
        f"The run ships {FACE} alone as its ensemble: the stack's cross-validated accuracy on "
        "the stacking part, 0.6501, does not exceed that member's, 0.6536" in card
    )
    assert "Use `base_model_1.skfer` (ensemble (MLP stack))" in card
    assert "The stack that the run did not ship, against the same member:" in card
    assert "- PublicTest: stack \u2212 best member: \u22120.0064 [" in card


def test_without_an_ensemble_or_intervals_the_card_still_says_what_it_can(tmp_path):
    document = full_document()
    for key in ("ensemble_minus_best_member", "stacking_cv", "member_selection"):
        del document[key]
    del document["models"]["ensemble (MLP stack)"]
    document["preset"]["train_per_class"] = 300
    document["results"] = [
        {key: value for key, value in r.items() if key != "accuracy_interval"}
        for r in document["results"]
        if not r["model"].startswith(("ensemble", "peer"))
    ]
    card = write_model_card(tmp_path / "MODEL_CARD.md", document).read_text()
    assert all(f"\n{heading}\n" in card for heading in SECTIONS)
    assert "No ensemble was stacked in this run: no paired difference." in card
    assert "- Training: 28709 images (at most 300 per class), split by image" in card
    assert f"Use `base_model_1.skfer` ({FACE})" in card
    assert f"| {FACE} | 280 | 0.6397 | 0.5500 |" in card
    assert f"- Class recalls of {FACE}" in card and "mini-Xception" not in card


def test_a_run_without_models_names_the_failures(tmp_path):
    document = full_document()
    for key in ("models", "best_base_model", "stop_accuracy", "ensemble_minus_best_member"):
        del document[key]
    document["results"] = []
    document["failures"] = ["face: WeightsDownloadError: no internet"]
    card = write_model_card(tmp_path / "MODEL_CARD.md", document).read_text()
    assert "No model was saved" in card and "No model was scored." in card
    assert "- No model was trained, so no class recalls." in card
    assert "- Not trained (its weights could not be had): face: WeightsDownloadError" in card


@pytest.mark.parametrize("lowest", [0, 5])
def test_ferplus_names_its_labels_licence_and_lowest_class(tmp_path, lowest):
    document = full_document()
    document["dataset"] = "ferplus"
    recalls = [0.8] * len(FERPLUS_CLASSES)
    recalls[lowest] = 0.1
    document["results"] = [
        row("ensemble (MLP stack)", "PublicTest", 0.8, [0.78, 0.82], recalls, FERPLUS_CLASSES)
    ]
    card = write_model_card(tmp_path / "MODEL_CARD.md", document).read_text()
    data = card[card.index("## Data") : card.index("## Splits")]
    assert "FER+" in data and "MIT" in data and "Microsoft" in data and "ICML 2013" in data
    assert f"- Lowest recall: **{FERPLUS_CLASSES[lowest]}** (0.1000 on PublicTest)" in card
    assert len(re.findall(r"^  \| \w+ \| 0\.\d{4} \|", card, flags=re.M)) == 8
