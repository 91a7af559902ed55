"""Does a stronger L2 penalty let the stacking MLP use more members? Its ``alpha`` on a run.

    python benchmarks/bench_stacker_alpha.py --run runs/ferplus_v13 [--alphas 1e-4 0.01 ...]
                                             [--out FILE.json]

The stacking MLP trains on about 2,000 images of the stacking part with scikit-learn's
default L2 penalty (``alpha=1e-4``) until its training loss stops falling: where a second
member lowers its cross-validated accuracy below the best member's alone, it may be fitting
noise. For each ``alpha`` this prints the stacking CV (the preset's stacker for the run's
dataset, :func:`skfer.ensemble.make_stacker` with that ``alpha``; 5 folds, the mean over fold
seeds 0, 1 and 2) minus the best member's accuracy on the stacking part, for fixed member
sets of the run's base models (ranked by that accuracy: the best alone, the best two, the four
best, all) and for ``reproduce``'s greedy forward selection from the best member
(``bench_candidates.greedy``; the experts are not candidates), whose stack is then scored on
PublicTest against that member, paired (reported, never used to choose). The members'
probabilities come from ``RUN/members.npz`` (``bench_members.py``, which writes it when
missing); the mean of the set's probabilities, nothing trained, is printed as a reference.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_candidates import PRESET, greedy, public_row, stacking_cv  # noqa: E402
from bench_members import add_run_arguments, members_of, run_splits, short  # noqa: E402

ALPHAS = (1e-4, 1e-2, 0.1, 1.0, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start = time.monotonic()

    def say(message):
        print(f"[bench_stacker_alpha {(time.monotonic() - start) / 60:5.1f} min] {message}",
              flush=True)  # fmt: skip

    document, splits, class_names = run_splits(args.run, args.data, args.ferplus_labels)
    dataset = document["dataset"]
    members = members_of(args.run, document, splits, class_names, args.run / "members.npz")
    members = {n: v for n, v in members.items() if not n.startswith("expert")}
    y_stack, y_public = splits.stack.target, splits.tests[0].target
    accuracy = {n: float(np.mean(v[0].argmax(axis=1) == y_stack)) for n, v in members.items()}
    ranked = sorted(accuracy, key=accuracy.get, reverse=True)
    best = ranked[0]
    kind = PRESET.stacker_for(dataset)
    say(f"{args.run} ({dataset}), {len(y_stack)} stacking images, stacker {kind}; members:")
    for name in ranked:
        say(f"  {accuracy[name]:.4f} {short(name)}{', 2nd seed' * name.endswith('second seed')}")
    sets = {"best": ranked[:1], "best two": ranked[:2], "best four": ranked[:4], "all": ranked}
    rows = []
    for name, chosen in sets.items():
        mean = np.mean([members[n][0] for n in chosen], axis=0).argmax(axis=1)
        row = {"set": name, "members": chosen,
               "mean_probabilities": float(np.mean(mean == y_stack)) - accuracy[best]}  # fmt: skip
        for alpha in args.alphas:
            row[f"alpha {alpha:g}"] = (
                stacking_cv([members[n][0] for n in chosen], y_stack, kind, alpha) - accuracy[best]
            )
        rows.append(row)
        cvs = ", ".join(f"alpha {a:g} {row[f'alpha {a:g}']:+.4f}" for a in args.alphas)
        say(f"{name}: mean of probabilities {row['mean_probabilities']:+.4f}; CV − best: {cvs}")
    selections = {}
    for alpha in args.alphas:

        def score(names: list, alpha: float = alpha) -> float:
            return stacking_cv([members[n][0] for n in names], y_stack, kind, alpha)

        steps = greedy(list(members), best, score)
        chosen = [n for n, _ in steps]
        public = public_row(members, chosen, y_stack, y_public, kind, alpha)
        diff = public["minus_best_member"]
        selections[f"{alpha:g}"] = {"steps": steps, **public}
        say(
            f"alpha {alpha:g}: selected "
            + " -> ".join(f"{short(n)} {v:.4f}" for n, v in steps)
            + f"; stacking CV − best {steps[-1][1] - accuracy[best]:+.4f}; PublicTest "
            f"{public['public_test']:.4f}, − best {diff['difference']:+.4f} "
            f"[{diff['interval'][0]:+.4f}, {diff['interval'][1]:+.4f}], "
            f"p = {diff['mcnemar_p_value']:.4f}"
        )
    if args.out:
        args.out.write_text(json.dumps({"sets": rows, "selections": selections}, indent=1))


if __name__ == "__main__":
    main()
