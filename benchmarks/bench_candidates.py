"""Would a new member earn its place beside a run's ensemble? Candidates trained on the run's split.

    python benchmarks/bench_candidates.py --run runs/cpu_v17 [--candidates frozen_max ...]
                                          [--drop LABEL ...] [--weights-dir DIR]
                                          [--out FILE.json]

Rebuilds a ``skfer reproduce --preset cpu`` run's protocol, FER2013 or FER+ (as
``bench_members.py`` does, from ``RUN/results.json``) and reads its members' probabilities on
the stacking part and PublicTest from ``RUN/members.npz`` (written by ``bench_members.py``).
Then it trains each candidate, a variant of the preset's frozen face model, of the spatial
head it had until run v27, of its block-13 model (at another input size; FER2013 only, as on
FER+ that model trains on the votes), of its ImageNet MobileNet 0.25 (another input size or
seed), the frozen model on the face MobileNet's lower nine blocks pooled over a 2 x 2 grid,
or, on FER+, the frozen, spatial-head and ImageNet models trained on the votes
(``ON_VOTES``), as ``reproduce`` trains a base model: on the fit part, early-stopped on the
stopping part, the face models scored with the preset's flip test-time augmentation. The
face candidates share one feature cache (the preset's bound), so the first one's minutes
include the block-11 maps of every image.

The run's members are those in ``members.npz`` less any whose label contains a ``--drop``
string; the selection is rebuilt from them as ``reproduce`` builds it, from the member most
accurate on the stacking part. For each candidate it prints the stacking CV (the preset's
five-seed MLP, 5 folds, the mean over fold seeds 0, 1 and 2: what chooses) of that selection
with and without it, and the greedy forward selection of ``reproduce`` (without the experts)
over the run's base models and the candidates; PublicTest with the paired difference against
the best member is reported, never used to choose. The stacker is the preset's for the run's
dataset (on FER+ ``ferplus_stacker``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_members import SHARED, add_run_arguments, load_members, run_splits, short  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402

from skfer import TransferCNNClassifier, get_backbone  # noqa: E402
from skfer.cache import feature_cache  # noqa: E402
from skfer.ensemble import MLP_STACKER_ALPHA, make_stacker  # noqa: E402
from skfer.metrics import paired_difference  # noqa: E402
from skfer.presets import PRESETS, BaseModelPlan  # noqa: E402

PRESET = PRESETS["cpu"]
FROZEN = next(
    plan
    for plan in PRESET.base_models
    if plan.params["backbone"] == "mobilenet_vggface2" and plan.params["long_epochs"] == 0
)
SPATIAL = BaseModelPlan(
    # The preset's member until run v27 (docs/results.md), which no selection took once the
    # lower-blocks member was there.
    "MobileNet 1.0 (face-trained, VGGFace2), frozen, spatial head, 224 px, mirrored, flip TTA",
    {**FROZEN.params, "pooling": "spatial", "head": (512,), "patience": 3},
)
BLOCK13 = PRESET.base_models[0]
IMAGENET = next(plan for plan in PRESET.base_models if plan.params["backbone"] == "mobilenet"
                and plan.params.get("weights", "default") == "default")  # fmt: skip
CANDIDATES = {
    "frozen_max": (FROZEN, {"pooling": "max"}, 0),
    "frozen_mixup": (FROZEN, {"feature_mixup_alpha": 0.4}, 0),
    "spatial_seed1": (SPATIAL, {}, 1),
    "spatial_mixup": (SPATIAL, {"feature_mixup_alpha": 0.4}, 0),
    "block13_160px": (BLOCK13, {"input_size": 160}, 0),
    "imagenet_128px": (IMAGENET, {"input_size": 128}, 0),
    "imagenet_seed1": (IMAGENET, {}, 1),
    "frozen_votes": (FROZEN, {}, 0),
    "spatial_votes": (SPATIAL, {}, 0),
    "imagenet_votes": (IMAGENET, {}, 0),
    "block9_grid": (
        FROZEN,
        {
            "backbone": "mobilenet_vggface2_block9",
            "pooling": "grid",
            "head_batchnorm": True,
            "head": (256,),
            "unfreeze_blocks": None,
        },
        0,
    ),
}
"""Name: (the preset's plan it varies, the params it changes, seed offset)."""
ON_VOTES = ("frozen_votes", "spatial_votes", "imagenet_votes")
"""Candidates trained on FER+'s vote distributions (FER+ runs only), where the preset trains
their plan on the majority labels."""
FOLD_SEEDS = (0, 1, 2)


def label(name: str) -> str:
    """A candidate's name, or a run member's short label."""
    if name in CANDIDATES:
        return name
    return short(name) + (", second seed" if name.endswith("second seed") else "")


def preset_stacker(kind: str, seed: int, alpha: float = MLP_STACKER_ALPHA):
    """The preset's stacker of ``kind``: its layers and seeds, ``random_state=seed``, its MLPs'
    L2 penalty ``alpha``."""
    return make_stacker(
        PRESET.stacker_layers,
        kind=kind,
        seeds=PRESET.stacker_seeds,
        alpha=alpha,
        random_state=seed,
    )


def stacking_cv(columns: list, y, kind: str, alpha: float = MLP_STACKER_ALPHA) -> float:
    """The stacker's 5-fold accuracy on the stacking part, mean over ``FOLD_SEEDS``."""
    x = np.column_stack(columns)
    return float(
        np.mean(
            [
                cross_val_score(
                    preset_stacker(kind, seed, alpha),
                    x,
                    y,
                    cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                ).mean()
                for seed in FOLD_SEEDS
            ]
        )
    )


def public_row(
    members: dict, names: list, y_stack, y_public, kind: str, alpha: float = MLP_STACKER_ALPHA
) -> dict:
    """PublicTest of the stack of ``names`` fitted on the stacking part, against the set's best
    member on the stacking part."""
    stack_accuracy = {n: np.mean(members[n][0].argmax(axis=1) == y_stack) for n in names}
    best = max(stack_accuracy, key=stack_accuracy.get)
    final = preset_stacker(kind, 0, alpha).fit(
        np.column_stack([members[n][0] for n in names]), y_stack
    )
    predicted = final.predict(np.column_stack([members[n][1] for n in names]))
    return {
        "public_test": float(np.mean(predicted == y_public)),
        "best_member": best,
        "minus_best_member": paired_difference(
            y_public, predicted, members[best][1].argmax(axis=1), random_state=0
        ),
    }


def greedy(candidates, base: str, score, min_gain: float = 0.002) -> list:
    """``reproduce``'s forward selection from ``base`` over ``candidates`` (names): each round
    adds the one that most raises ``score`` (a list of names to the stack's CV accuracy),
    until the best gain is ``<= min_gain``. Returns the steps, (name, score), base first."""
    selected, current = [], score([base])
    steps = [(base, current)]
    while True:
        trial = {
            name: score([base, *selected, name])
            for name in candidates
            if name != base and name not in selected
        }
        if not trial:
            return steps
        best = max(trial, key=trial.get)
        print("  round: " + ", ".join(f"{label(n)} {v:.4f}" for n, v in trial.items()), flush=True)
        if trial[best] - current <= min_gain:
            return steps
        selected.append(best)
        current = trial[best]
        steps.append((best, current))


def weight_file(plan, weights_dir: Path) -> str:
    """The plan's backbone's default weight file, found under ``weights_dir``."""
    spec = get_backbone(plan.params["backbone"])
    return str(sorted(weights_dir.rglob(spec.weights[spec.default_weights].file_name))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--weights-dir", type=Path, default=SHARED / "weights")
    parser.add_argument(
        "--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES)
    )
    parser.add_argument(
        "--drop", nargs="+", default=[], help="leave out the run's members whose label has this"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start = time.monotonic()

    def say(message):
        elapsed = (time.monotonic() - start) / 60
        print(f"[bench_candidates {elapsed:5.1f} min] {message}", flush=True)

    document, splits, _ = run_splits(args.run, args.data, args.ferplus_labels)
    dataset = document["dataset"]
    if document["preset"]["name"] != "cpu":
        raise SystemExit("bench_candidates takes a run of --preset cpu")
    if dataset == "ferplus" and any(CANDIDATES[n][0] is BLOCK13 for n in args.candidates):
        raise SystemExit("on FER+ the block-13 model trains on the votes: no block13_ candidates")
    if dataset == "fer2013" and set(args.candidates) & set(ON_VOTES):
        raise SystemExit(f"{ON_VOTES} train on FER+ votes: they take a FER+ run")
    kind = PRESET.stacker_for(dataset)
    members = load_members(args.run / "members.npz")
    # On FER2013 the members on FER+ votes (run v17) are not in the preset.
    dropped = [*args.drop, *(["FER+ votes"] if dataset == "fer2013" else [])]
    members = {n: v for n, v in members.items() if not any(d in n for d in dropped)}
    y_stack, y_public = splits.stack.target, splits.tests[0].target
    base = max(members, key=lambda n: np.mean(members[n][0].argmax(axis=1) == y_stack))

    def score(names: list) -> float:
        """The stacking CV (mean over ``FOLD_SEEDS``) of ``names``' outputs."""
        return stacking_cv([members[n][0] for n in names], y_stack, kind)

    say(f"the run's selection over its members, from {label(base)}:")
    chosen = [n for n, _ in greedy(list(members), base, score)]
    say(
        f"{args.run}: {len(splits.fit)} fit, {len(splits.stop)} stop, {len(splits.stack)} stack; "
        f"selected: {', '.join(label(n) for n in chosen)}; {platform.node()}, "
        f"{os.cpu_count()} cores; stacker {kind}"
    )
    feature_cache.max_bytes = max(feature_cache.max_bytes, PRESET.feature_cache_bytes)
    rows = []
    for name in args.candidates:
        plan, change, offset = CANDIDATES[name]
        clf = TransferCNNClassifier(
            **{**plan.params, **change, "weights": weight_file(plan, args.weights_dir)},
            random_state=document["random_state"] + offset,
            verbose=0,
        )
        tick = time.monotonic()
        votes = splits.fit.distribution if name in ON_VOTES else None
        clf.fit(splits.fit.images, splits.fit.target, target_distribution=votes,
                validation_data=(splits.stop.images, splits.stop.target))  # fmt: skip
        minutes = (time.monotonic() - tick) / 60
        clf.set_params(cache_predictions=True)
        members[name] = (clf.predict_proba(splits.stack.images),
                         clf.predict_proba(splits.tests[0].images))  # fmt: skip
        stop = float(np.mean(clf.predict(splits.stop.images) == splits.stop.target))
        without, with_it = (
            stacking_cv([members[n][0] for n in chosen], y_stack, kind),
            stacking_cv([members[n][0] for n in (*chosen, name)], y_stack, kind),
        )
        row = {
            "candidate": name,
            "change": change,
            "seed_offset": offset,
            "fit_minutes": round(minutes, 2),
            "stop": stop,
            "stack_argmax": float(np.mean(members[name][0].argmax(axis=1) == y_stack)),
            "public_test_alone": float(np.mean(members[name][1].argmax(axis=1) == y_public)),
            "stacking_cv_selected": without,
            "stacking_cv_selected_plus": with_it,
            **public_row(members, [*chosen, name], y_stack, y_public, kind),
        }
        rows.append(row)
        diff = row["minus_best_member"]
        say(
            f"{name}: fit {minutes:.1f} min, stop {stop:.4f}, PublicTest alone "
            f"{row['public_test_alone']:.4f}; stacking CV of the run's selection {without:.4f}, "
            f"with it {with_it:.4f} ({with_it - without:+.4f}); that stack on PublicTest "
            f"{row['public_test']:.4f}, {diff['difference']:+.4f} [{diff['interval'][0]:+.4f}, "
            f"{diff['interval'][1]:+.4f}] against {label(row['best_member'])}"
        )
    say("greedy forward selection over the run's base models and the candidates:")
    steps = greedy(list(members), base, score)
    say("selected: " + " -> ".join(f"{label(n)} {v:.4f}" for n, v in steps))
    final = public_row(members, [n for n, _ in steps], y_stack, y_public, kind)
    say(f"its PublicTest {final['public_test']:.4f}, {final['minus_best_member']}")
    if args.out:
        args.out.write_text(
            json.dumps({"rows": rows, "greedy": steps, "greedy_public": final}, indent=1)
        )


if __name__ == "__main__":
    main()
