"""Which base model the ensemble is built on: the stopping part's best or the stacking part's.

    python benchmarks/bench_ensemble_base.py --run runs/cpu_v21 [--out FILE.json]

Reads a ``skfer reproduce`` run's member probabilities on the stacking part and PublicTest
(``RUN/members.npz``, written by ``bench_members.py``, which this script writes first when it
is missing) and rebuilds its split as ``bench_members.py`` does. For each rule, the base
model the ensemble starts from:

- ``stopping``: the base model most accurate on the stopping part (``skfer reproduce``
  until 2026-12-06; the run's ``best_base_model``);
- ``stacking``: the base model most accurate on the stacking part (``skfer reproduce`` since),

it runs the run's greedy member selection (:func:`skfer.ensemble.select_experts`: the
preset's stacker or ``--stacker``, with the preset's or ``--stacker-seeds`` MLPs; the run's
seed; ``--folds`` folds, 5 as in ``skfer reproduce``) with the run's other base models as the
candidates, and prints
the selected members, the stacking CV against the best member's accuracy there (and the
stack's out-of-fold predictions against that member's, paired: interval and McNemar's
p-value, as ``skfer reproduce`` reports them since 2026-12-06), and the PublicTest accuracy
of the stacker fitted on the whole stacking part with the paired
difference against that member (reported, never used to choose).

The run saves only the experts its ensemble kept, so the experts are not candidates here;
and the members predict without the run's float16 feature cache, so their outputs can differ
from the run's by that rounding (on run v21 they gave the run's selection and figures to the
fourth decimal).
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
from bench_members import add_run_arguments, best_base_member, members_of, run_splits  # noqa: E402
from bench_selection import SavedOutputs  # noqa: E402

from skfer.ensemble import STACKERS, make_stacker, select_experts  # noqa: E402
from skfer.metrics import paired_difference  # noqa: E402


class NoExperts:
    """One-vs-all experts of no class: the selection's candidates are the base models."""

    classes_ = np.arange(0)


def compare(
    members: dict, y_stack, y_public, stop_best: str, preset: dict, seed: int, folds: int = 5
) -> dict:
    """Selection, stacking CV and PublicTest for each rule of the ensemble's base."""
    stack_accuracy = {
        name: float(np.mean(p[0].argmax(axis=1) == y_stack)) for name, p in members.items()
    }
    bases = {"stopping": stop_best, "stacking": max(stack_accuracy, key=stack_accuracy.get)}
    stacker = dict(
        hidden_layer_sizes=tuple(preset["stacker_layers"]),
        stacker=preset["stacker"],
        stacker_seeds=preset["stacker_seeds"],
    )
    rows = {}
    for rule, base in bases.items():
        others = {name: SavedOutputs(p[0]) for name, p in members.items() if name != base}
        selection = select_experts(
            SavedOutputs(members[base][0]), NoExperts(), None, y_stack, others=others,
            cv=folds, random_state=seed, n_jobs=-1, **stacker,
        )  # fmt: skip
        chosen = [base, *selection.selected_others]
        cv = selection.cv_score
        best = max(chosen, key=stack_accuracy.get)
        model = make_stacker(
            stacker["hidden_layer_sizes"], kind=stacker["stacker"], seeds=stacker["stacker_seeds"],
            random_state=seed,
        ).fit(np.column_stack([members[n][0] for n in chosen]), y_stack)  # fmt: skip
        predicted = model.predict(np.column_stack([members[n][1] for n in chosen]))
        difference = paired_difference(
            y_public, predicted, members[best][1].argmax(axis=1), random_state=seed
        )
        out_of_fold = paired_difference(
            y_stack, selection.out_of_fold, members[best][0].argmax(axis=1), random_state=seed
        )
        rows[rule] = {
            "base": base,
            "members": chosen,
            "steps": [list(step) for step in selection.steps],
            "stacking_cv": float(cv),
            "best_member": best,
            "best_member_stack_accuracy": stack_accuracy[best],
            "public_test": float(np.mean(predicted == y_public)),
            "minus_best_member": difference,
            "stacking_out_of_fold_minus_best_member": out_of_fold,
        }
        print(
            f"{rule}: base {base}\n  members: {' + '.join(chosen)}\n"
            f"  stacking CV {cv:.4f}, best member ({best}) {stack_accuracy[best]:.4f}, "
            f"difference {cv - stack_accuracy[best]:+.4f}; out of fold, paired: "
            f"{out_of_fold['difference']:+.4f} [{out_of_fold['interval'][0]:+.4f}, "
            f"{out_of_fold['interval'][1]:+.4f}], McNemar p = "
            f"{out_of_fold['mcnemar_p_value']:.4f}\n"
            f"  PublicTest {rows[rule]['public_test']:.4f}, minus the best member "
            f"{difference['difference']:+.4f} [{difference['interval'][0]:+.4f}, "
            f"{difference['interval'][1]:+.4f}], McNemar p = {difference['mcnemar_p_value']:.4f}",
            flush=True,
        )
    return {"stack_accuracy": stack_accuracy, "rules": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--members", type=Path, help="npz of the members' probabilities")
    parser.add_argument("--out", type=Path, help="JSON file for the comparison")
    parser.add_argument("--folds", type=int, default=5, help="the selection's CV folds")
    parser.add_argument(
        "--stacker-seeds", type=int, help="MLPs the stacker averages (default: the preset's)"
    )
    parser.add_argument(
        "--stacker", choices=STACKERS, help="the final estimator (default: the preset's)"
    )
    args = parser.parse_args()
    members_file = args.members or args.run / "members.npz"
    document, splits, class_names = run_splits(args.run, args.data, args.ferplus_labels)
    members = {
        name: outputs
        for name, outputs in members_of(
            args.run, document, splits, class_names, members_file
        ).items()
        if not name.startswith("expert")
    }
    print(
        f"bench_ensemble_base: {args.run} ({document['dataset']}), {len(splits.stack)} stacking "
        f"images, PublicTest {len(splits.tests[0].target)}; {platform.node()}, "
        f"{os.cpu_count()} cores, {datetime.date.today()}",
        flush=True,
    )
    preset = document["preset"]
    if args.stacker_seeds is not None:
        preset = {**preset, "stacker_seeds": args.stacker_seeds}
    if args.stacker is not None:
        preset = {**preset, "stacker": args.stacker}
    result = compare(
        members,
        splits.stack.target,
        splits.tests[0].target,
        best_base_member(document, members),
        preset,
        document["random_state"],
        args.folds,
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
