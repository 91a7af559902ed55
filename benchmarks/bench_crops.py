"""Do five test-time crops raise a run's members and its ensemble, and what do they cost?

    python benchmarks/bench_crops.py --run runs/ferplus_v11 [--only LABEL ...]
                                     [--drop LABEL ...] [--stacker KIND] [--out FILE.json]

Loads a ``skfer reproduce`` run's saved base models, rebuilds its split as
``bench_members.py`` does, and has each model predict the stacking part and PublicTest
through the feature cache (``cache_predictions=True``, bounded as the run's preset bounds
it, so that the face models share the maps of each view), twice: as the run predicts (the
whole image and, with ``test_time_flip``, its mirror image) and with ``test_time_crops=5``
(its four corner crops and centre crop, 0.9 of the side, each with its mirror image: 10
views). It prints each model's accuracy both ways and the seconds each took (the first face
model's include the maps of every view), then, for each way, the selection of
``bench_ensemble_base.py`` from the stacking part's best base model (the run's preset,
seed and 5 folds): the stacking CV against the best member's accuracy there, and the
PublicTest accuracy of the stack with the paired difference against that member (reported,
never used to choose).

``--only``: only the models whose label contains one of these strings are predicted (both
ways); the other members' outputs, the same both ways, are those of ``RUN/members.npz``
(``bench_members.py``), less any whose label contains a ``--drop`` string. ``--stacker``:
the final estimator (default: the run's preset's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_ensemble_base import compare  # noqa: E402
from bench_members import (  # noqa: E402
    add_run_arguments,
    best_base_member,
    load_members,
    run_splits,
)

import skfer  # noqa: E402
from skfer.cache import feature_cache  # noqa: E402
from skfer.ensemble import STACKERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument("--only", nargs="+", help="crop only the models whose label has this")
    parser.add_argument("--drop", nargs="+", default=[], help="with --only: members left out")
    parser.add_argument("--stacker", choices=STACKERS, help="default: the preset's")
    args = parser.parse_args()
    document, splits, _ = run_splits(args.run, args.data, args.ferplus_labels)
    preset, seed = document["preset"], document["random_state"]
    if args.stacker is not None:
        preset = {**preset, "stacker": args.stacker}
    feature_cache.max_bytes = max(feature_cache.max_bytes, preset["feature_cache_bytes"] or 0)
    stack, public = splits.stack, splits.tests[0]
    print(
        f"bench_crops: {args.run} ({document['dataset']}), {len(stack)} stacking images, "
        f"PublicTest {len(public.target)}; {platform.node()}, {os.cpu_count()} cores, "
        f"{datetime.date.today()}",
        flush=True,
    )
    outputs = {1: {}, 5: {}}
    if args.only:
        saved = load_members(args.run / "members.npz")
        for label, probabilities in saved.items():
            if not any(part in label for part in [*args.only, *args.drop, "expert"]):
                outputs[1][label] = outputs[5][label] = probabilities
    rows = []
    labels = [base["label"] for base in document["preset"]["base_models"]]
    for number, label in enumerate(labels, start=1):
        path = args.run / "models" / f"base_model_{number}.skfer"
        if not path.exists() or (args.only and not any(part in label for part in args.only)):
            continue
        model = skfer.load(path).set_params(cache_predictions=True)
        row = {"model": label}
        for crops in (1, 5):
            model.set_params(test_time_crops=crops)
            tick = time.perf_counter()
            probabilities = (model.predict_proba(stack.images), model.predict_proba(public.images))
            outputs[crops][label] = probabilities
            row[f"crops_{crops}"] = {
                "seconds": time.perf_counter() - tick,
                "stack": float(np.mean(probabilities[0].argmax(axis=1) == stack.target)),
                "public_test": float(np.mean(probabilities[1].argmax(axis=1) == public.target)),
            }
        rows.append(row)
        print(
            f"{label}:\n  "
            + "; ".join(
                f"{'5 crops' if crops == 5 else 'as the run'}: stacking part "
                f"{row[f'crops_{crops}']['stack']:.4f}, PublicTest "
                f"{row[f'crops_{crops}']['public_test']:.4f}, "
                f"{row[f'crops_{crops}']['seconds']:.0f} s"
                for crops in (1, 5)
            ),
            flush=True,
        )
    ensembles = {}
    for crops, members in outputs.items():
        print(f"selection, {'5 crops' if crops == 5 else 'as the run'}:", flush=True)
        ensembles[crops] = compare(
            members, stack.target, public.target, best_base_member(document, members), preset, seed
        )["rules"]["stacking"]
    if args.out:
        args.out.write_text(json.dumps({"models": rows, "ensembles": ensembles}, indent=1))


if __name__ == "__main__":
    main()
