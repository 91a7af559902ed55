"""Is the stacking MLP bound by its few thousand images? Learning curve, noise and capacity.

    python benchmarks/bench_stack_data.py --run runs/cpu_v17 [--out FILE.json]

Reads a ``skfer reproduce`` run's member probabilities on the stacking part and PublicTest
(``RUN/members.npz``, written by ``bench_members.py``) and rebuilds its split as
``bench_members.py`` does. For the run's selected members, and for them with the run's other
fine-tuned seed and then the frozen model added, it prints:

- the stacking CV of the preset's five-seed MLP (5 folds) under fold seeds 0 to 4: how much
  the selection's number moves with the folds alone;
- a learning curve: the same stacker trained on 40%, 60%, 80% and all of each fold's
  training images (the stacking part's 4/5), scored on the fold's held-out fifth (fold seeds
  0 to 2);
- the MLP's capacity and penalty: hidden layers (16, 8), (32, 16), (64, 32) and (128, 64),
  and ``alpha`` 1e-4 (scikit-learn's default, the preset's), 1e-2 and 1;
- the plain mean of the members' probabilities (nothing trained: its accuracy on the
  stacking part is its estimate) as a reference;

and each stacker's PublicTest accuracy when fitted on the whole stacking part (reported, never
used to choose).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_members import add_run_arguments, load_members, run_splits  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from skfer.ensemble import MLP_STACKER_TOL  # noqa: E402
from skfer.presets import PRESETS  # noqa: E402

SEEDS = PRESETS["cpu"].stacker_seeds
FRACTIONS = (0.4, 0.6, 0.8, 1.0)
HIDDEN = ((16, 8), (32, 16), (64, 32), (128, 64))
ALPHAS = (1e-4, 1e-2, 1.0)


def stacker_predict(x, y, x_test, *, hidden=(64, 32), alpha=1e-4, seed=0) -> np.ndarray:
    """Class predictions of the mean of ``SEEDS`` MLPs (as ``SeedAveragedMLP`` seeds them)."""
    seeds = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=SEEDS)
    probabilities = [
        MLPClassifier(hidden, alpha=alpha, tol=MLP_STACKER_TOL, max_iter=1000, random_state=int(s))
        .fit(x, y)
        .predict_proba(x_test)
        for s in seeds
    ]
    return np.mean(probabilities, axis=0).argmax(axis=1)


def fold_accuracy(x, y, train, test, fraction=1.0, **stacker) -> float:
    """One fold's held-out accuracy, trained on the first ``fraction`` of a shuffled ``train``
    (all of it in its order for ``fraction=1``: the selection's fold)."""
    if fraction < 1:
        seed = stacker.get("seed", 0)
        train = np.random.default_rng(seed).permutation(train)[: int(fraction * len(train))]
    return float(np.mean(stacker_predict(x[train], y[train], x[test], **stacker) == y[test]))


def cv(parallel, x, y, fold_seeds, fraction=1.0, **stacker) -> list[float]:
    """The 5-fold accuracy for each fold seed (the stacker seeded as the folds)."""
    jobs = [
        (seed, train, test)
        for seed in fold_seeds
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y)
    ]
    scores = parallel(
        delayed(fold_accuracy)(x, y, train, test, fraction, **{**stacker, "seed": seed})
        for seed, train, test in jobs
    )
    return [float(np.mean(scores[i * 5 : (i + 1) * 5])) for i in range(len(fold_seeds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    document, splits, _ = run_splits(args.run, args.data, args.ferplus_labels)
    members = load_members(args.run / "members.npz")
    names = list(members)
    selected = document["member_selection"]["members"]
    fine_tuned = [n for n in names if "fine-tuned" in n and n not in selected]
    frozen = [n for n in names if n.endswith("frozen, 224 px, mirrored, flip TTA")]
    sets = {"the run's selection": selected}
    if fine_tuned:
        sets["+ the other fine-tuned seed"] = selected + fine_tuned[:1]
        if frozen:
            sets["+ the other seed + frozen"] = selected + fine_tuned[:1] + frozen[:1]
    y, y_public = splits.stack.target, splits.tests[0].target
    print(
        f"bench_stack_data: {args.run}, {len(y)} stacking images, PublicTest {len(y_public)}; "
        f"{platform.node()}, {os.cpu_count()} cores; the five-seed MLP unless said",
        flush=True,
    )
    parallel = Parallel(n_jobs=-1)
    rows = []
    for title, members_of_set in sets.items():
        x = np.column_stack([members[n][0] for n in members_of_set])
        x_public = np.column_stack([members[n][1] for n in members_of_set])
        mean_stack = np.mean([members[n][0] for n in members_of_set], axis=0)
        mean_public = np.mean([members[n][1] for n in members_of_set], axis=0)
        row = {
            "set": title,
            "members": members_of_set,
            "plain_mean": {
                "stacking_part": float(np.mean(mean_stack.argmax(axis=1) == y)),
                "public_test": float(np.mean(mean_public.argmax(axis=1) == y_public)),
            },
            "cv_by_fold_seed": cv(parallel, x, y, range(5)),
            "learning_curve": {
                str(f): float(np.mean(cv(parallel, x, y, range(3), fraction=f))) for f in FRACTIONS
            },
            "hidden": {},
            "alpha": {},
        }
        for hidden in HIDDEN:
            row["hidden"][str(hidden)] = {
                "cv": float(np.mean(cv(parallel, x, y, range(3), hidden=hidden))),
                "public_test": float(
                    np.mean(stacker_predict(x, y, x_public, hidden=hidden) == y_public)
                ),
            }
        for alpha in ALPHAS:
            row["alpha"][str(alpha)] = {
                "cv": float(np.mean(cv(parallel, x, y, range(3), alpha=alpha))),
                "public_test": float(
                    np.mean(stacker_predict(x, y, x_public, alpha=alpha) == y_public)
                ),
            }
        rows.append(row)
        per_seed = row["cv_by_fold_seed"]
        print(
            f"{title}: stacking CV over fold seeds 0-4 "
            + " ".join(f"{v:.4f}" for v in per_seed)
            + f" (mean {np.mean(per_seed):.4f}, range {max(per_seed) - min(per_seed):.4f}); "
            f"plain mean of probabilities: stacking part {row['plain_mean']['stacking_part']:.4f}"
            f", PublicTest {row['plain_mean']['public_test']:.4f}",
            flush=True,
        )
        n_train = int(len(y) * 4 / 5)
        print(
            "  learning curve (training images per fold: CV): "
            + ", ".join(
                f"{int(float(f) * n_train)}: {v:.4f}" for f, v in row["learning_curve"].items()
            ),
            flush=True,
        )
        for kind in ("hidden", "alpha"):
            print(
                f"  {kind}: "
                + ", ".join(
                    f"{k}: CV {v['cv']:.4f} PublicTest {v['public_test']:.4f}"
                    for k, v in row[kind].items()
                ),
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
