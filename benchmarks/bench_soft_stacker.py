"""Does the stacking MLP of a FER+ run gain from learning the votes instead of the majority label?

    python benchmarks/bench_soft_stacker.py --run runs/ferplus_v11 [--out FILE.json]

Reads a ``skfer reproduce --dataset ferplus`` run's member probabilities on the stacking part
and PublicTest (``RUN/members.npz``, written by ``bench_members.py``, which this script writes
first when it is missing) and rebuilds its split as ``bench_members.py`` does. For each target
the stacker learns from:

- ``majority``: each stacking image's majority label (``skfer reproduce`` now);
- ``votes``: its vote distribution, as the mean of five MLPs (the preset's stacker) trained
  on each image repeated once per class that got votes, weighted by that class's share
  (``MLPClassifier.fit(sample_weight=...)``): the soft-target loss of the members on votes,

it runs ``reproduce``'s greedy forward selection (``bench_candidates.greedy``: the run's
seed, 5 folds, the base model most accurate on the stacking part first, the rule's
``min_gain``) over the run's base models; the folds and the score are the same for both
targets (accuracy on the majority labels). Then it prints the stacking CV against the best
member's accuracy there and the PublicTest accuracy of the stacker fitted on the whole
stacking part, with the paired difference against that member
(reported, never used to choose).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_candidates import greedy  # noqa: E402
from bench_members import add_run_arguments, members_of, run_splits  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from skfer.ensemble import MLP_STACKER_TOL  # noqa: E402
from skfer.metrics import paired_difference  # noqa: E402


def fit_stacker(x, y, votes, layers, seeds: int, seed: int):
    """The mean of ``seeds`` MLPs on ``x``: on the labels ``y``, or where ``votes`` (rows of
    class shares) is given, on them."""
    n_classes = votes.shape[1] if votes is not None else int(y.max()) + 1
    if votes is not None:
        rows, classes = np.nonzero(votes)
        x, y, weight = x[rows], classes, votes[rows, classes]
    else:
        weight = None
    draws = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=seeds)
    mlps = [
        MLPClassifier(layers, tol=MLP_STACKER_TOL, max_iter=1000, random_state=int(s)).fit(
            x, y, sample_weight=weight
        )
        for s in draws
    ]

    def predict(features):
        mean = np.zeros((len(features), n_classes))
        for mlp in mlps:
            mean[:, mlp.classes_] += mlp.predict_proba(features) / len(mlps)
        return mean.argmax(axis=1)

    return predict


def fold_accuracy(x, y, votes, train, test, layers, seeds, seed) -> float:
    predict = fit_stacker(
        x[train], y[train], None if votes is None else votes[train], layers, seeds, seed
    )
    return float(np.mean(predict(x[test]) == y[test]))


def select(members: dict, base: str, y, votes, layers, seeds: int, seed: int, folds: int = 5):
    """``reproduce``'s greedy selection from ``base``, the stacker on ``votes`` if given."""
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y))
    parallel = Parallel(n_jobs=-1)

    def cv(names: list) -> float:
        x = np.column_stack([members[n][0] for n in names])
        scores = parallel(
            delayed(fold_accuracy)(x, y, votes, train, test, layers, seeds, seed)
            for train, test in splits
        )
        return float(np.mean(scores))

    steps = greedy(list(members), base, cv)
    return [name for name, _ in steps], steps[-1][1], steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--members", type=Path, help="npz of the members' probabilities")
    parser.add_argument("--out", type=Path, help="JSON file for the comparison")
    args = parser.parse_args()
    document, splits, class_names = run_splits(args.run, args.data, args.ferplus_labels)
    if document["dataset"] != "ferplus":
        raise SystemExit("bench_soft_stacker takes a --dataset ferplus run: it needs the votes")
    members = {
        name: outputs
        for name, outputs in members_of(
            args.run, document, splits, class_names, args.members or args.run / "members.npz"
        ).items()
        if not name.startswith("expert")
    }
    stack, public = splits.stack, splits.tests[0]
    votes = stack.distribution / stack.distribution.sum(axis=1, keepdims=True)
    y, y_public = stack.target, public.target
    preset, seed = document["preset"], document["random_state"]
    layers, seeds = tuple(preset["stacker_layers"]), preset["stacker_seeds"]
    print(
        f"bench_soft_stacker: {args.run}, {len(y)} stacking images, PublicTest "
        f"{len(y_public)}; {platform.node()}, {os.cpu_count()} cores, {datetime.date.today()}",
        flush=True,
    )
    accuracy = {n: float(np.mean(p[0].argmax(axis=1) == y)) for n, p in members.items()}
    base = max(accuracy, key=accuracy.get)
    rows = {}
    for target, target_votes in (("majority", None), ("votes", votes)):
        print(f"{target}: selection from {base}", flush=True)
        chosen, cv, steps = select(members, base, y, target_votes, layers, seeds, seed)
        best = max(chosen, key=accuracy.get)
        predict = fit_stacker(
            np.column_stack([members[n][0] for n in chosen]), y, target_votes, layers, seeds, seed
        )
        predicted = predict(np.column_stack([members[n][1] for n in chosen]))
        difference = paired_difference(
            y_public, predicted, members[best][1].argmax(axis=1), random_state=seed
        )
        rows[target] = {
            "members": chosen,
            "steps": steps,
            "stacking_cv": cv,
            "best_member": best,
            "best_member_stack_accuracy": accuracy[best],
            "public_test": float(np.mean(predicted == y_public)),
            "minus_best_member": difference,
        }
        print(
            f"{target}: {' + '.join(chosen)}\n  stacking CV {cv:.4f}, best member "
            f"{accuracy[best]:.4f}, difference {cv - accuracy[best]:+.4f}\n  PublicTest "
            f"{rows[target]['public_test']:.4f}, minus the best member "
            f"{difference['difference']:+.4f} [{difference['interval'][0]:+.4f}, "
            f"{difference['interval'][1]:+.4f}], McNemar p = {difference['mcnemar_p_value']:.4f}",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps({"stack_accuracy": accuracy, "targets": rows}, indent=1))


if __name__ == "__main__":
    main()
