"""How long the expert selection takes, in one process and in all cores.

    python benchmarks/bench_selection.py --members FILE.npz [--repeats 1]

``skfer.ensemble.select_experts`` refits the stacking MLP once per candidate set and fold.
This times it with ``n_jobs=None`` (one process) and ``n_jobs=-1`` (all cores), alternately,
on the held-out outputs of real members that ``benchmarks/bench_stacker.py --members FILE``
saved, and checks that both choose the same experts with the same scores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from skfer.ensemble import select_experts
from skfer.experts import spread_score


class SavedOutputs:
    """A fitted member that answers ``predict_proba`` with outputs saved earlier."""

    def __init__(self, proba: np.ndarray):
        self.proba = proba

    def predict_proba(self, X) -> np.ndarray:
        return self.proba


class SavedExperts:
    """One-vs-all experts whose scores (one column per class) were saved earlier."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores
        self.classes_ = np.arange(scores.shape[1])

    def expert(self, label) -> SavedOutputs:
        n_classes = self.scores.shape[1]
        return SavedOutputs(spread_score(self.scores[:, label], label, n_classes))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=Path, required=True, help="npz of bench_stacker.py")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each side")
    args = parser.parse_args(argv)
    outputs = np.load(args.members)
    base, experts = SavedOutputs(outputs["hold_base"]), SavedExperts(outputs["hold_experts"])
    y = outputs["hold_y"]
    print(f"{datetime.date.today()} {platform.platform()} {os.cpu_count()} CPUs; "
          f"{len(y)} held-out images, {len(experts.classes_)} experts", flush=True)  # fmt: skip
    best = {None: np.inf, -1: np.inf}
    selections = {}
    for _ in range(args.repeats):
        for n_jobs in best:
            start = time.perf_counter()
            selections[n_jobs] = select_experts(base, experts, None, y, n_jobs=n_jobs)
            best[n_jobs] = min(best[n_jobs], time.perf_counter() - start)
    one, every = selections[None], selections[-1]
    print(one.summary())
    print(
        f"select_experts: one process {best[None]:.1f} s, n_jobs=-1 {best[-1]:.1f} s, "
        f"speed-up {best[None] / best[-1]:.2f}x; same selection and scores: {one == every}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
