"""Which members earn the ensemble its place: an ablation over member sets and stackers.

    python benchmarks/bench_members.py --run runs/cpu_v7 [--members FILE.npz] [--out FILE.json]
                                       [--stackers 0,4]
                                       [--data FER2013.csv.gz] [--ferplus-labels FER2013NEW.csv]
    python benchmarks/bench_members.py --scratch-throughput

Rebuilds a ``skfer reproduce`` run's protocol (:func:`skfer.protocol.split_for_run` with its
preset's fractions and seed, from ``RUN/results.json``), loads the base models and the
ensemble's experts that the run saved into ``RUN/models/``, and stores their probabilities on
the stacking part and on PublicTest in ``--members`` (default ``RUN/members.npz``; reused
when it exists). Then, for each member set and stacker, it prints the 5-fold cross-validated
accuracy on the stacking part (the number that chooses) against the best member's own argmax
there, and the PublicTest accuracy of the stacker fitted on the whole stacking part with the
paired difference against the best member (interval, McNemar's p; reported, never used to
choose). A set's best member is its member with the highest accuracy on the stacking part.
Stackers: the run's MLP on probabilities (skfer's default), the same MLP at scikit-learn's
default ``tol`` (1e-4, skfer's stacker before it stopped at
``MLP_STACKER_TOL``), the MLP on log-probabilities, a logistic regression on
log-probabilities as a reference, and the mean of five seeds' MLPs on probabilities
(``make_stacker(seeds=5)``, the cpu preset's stacker). Last, the stacking CV of the
one-MLP and the five-MLP stacker under five seeds, for the best member alone and for all
members: how far the initialisation alone moves it.

``--scratch-throughput`` times the training of a small CNN from random initialisation at 48
px (four VGG blocks of two 3x3 convolutions, 32 to 256 filters, BatchNorm; 1.2 M parameters),
the kind of member that shares nothing with the face model, in float32 and bfloat16: whether
one fits in the cpu preset's hour.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

import skfer  # noqa: E402
from skfer.ensemble import LogProbabilities, make_stacker  # noqa: E402
from skfer.ferplus import load_dataset  # noqa: E402
from skfer.metrics import paired_difference  # noqa: E402
from skfer.protocol import Part, split_for_run  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def run_splits(run_dir: Path, data: Path, ferplus_labels: Path):
    """The run's document, its splits (rebuilt from its ``results.json``) and class names."""
    document = json.loads((run_dir / "results.json").read_text())
    preset = document["preset"]
    labels = ferplus_labels if document["dataset"] == "ferplus" else None
    fer = load_dataset(document["dataset"], data, labels, splits=["Training", "PublicTest"])
    train = Part(fer.train.images, fer.train.target, fer.train.get("distribution"))
    splits = split_for_run(
        train,
        {"PublicTest": (fer.public_test.images, fer.public_test.target)},
        stop_fraction=preset["stop_fraction"],
        stack_fraction=preset["stack_fraction"],
        seed=document["random_state"],
        per_class=preset["train_per_class"],
    )
    expected = document["protocol"]
    if (len(splits.fit), len(splits.stop), len(splits.stack)) != (
        expected["fit"],
        expected["stop"],
        expected["stack"],
    ):
        raise SystemExit(f"the rebuilt split differs from the run's: {expected}")
    return document, splits, list(fer.class_names)


def add_run_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--run`` (a ``skfer reproduce`` output folder) and the files its split is rebuilt from,
    ``--data`` and ``--ferplus-labels``."""
    parser.add_argument(
        "--run", type=Path, required=required, help="a skfer reproduce output folder"
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data/fer2013/fer2013.csv.gz")
    parser.add_argument(
        "--ferplus-labels", type=Path, default=SHARED / "data/ferplus/fer2013new.csv"
    )


def load_members(path: Path) -> dict:
    """Member label to its (stacking part, PublicTest) probabilities, from an npz that
    :func:`main` wrote, in the order it stored them."""
    stored = np.load(path, allow_pickle=False)
    names = json.loads(str(stored["names"]))
    return {name: (stored[f"stack_{i}"], stored[f"public_{i}"]) for i, name in enumerate(names)}


def best_base_member(document: dict, members: dict) -> str:
    """The run's ``best_base_model`` among ``members``, whose labels are the preset's: on FER+
    the trained label adds ", soft targets (FER+ votes)" to a member on the votes."""
    best = document["best_base_model"]
    if best in members:
        return best
    return max((name for name in members if best.startswith(name)), key=len)


def members_of(run_dir: Path, document: dict, splits, class_names: list, path: Path) -> dict:
    """:func:`load_members` of ``path``; where it is missing, :func:`saved_members`, stored
    there first."""
    if path.exists():
        return load_members(path)
    members = saved_members(run_dir, document, splits, class_names)
    names = list(members)
    np.savez(
        path,
        names=json.dumps(names),
        **{f"stack_{i}": members[n][0] for i, n in enumerate(names)},
        **{f"public_{i}": members[n][1] for i, n in enumerate(names)},
    )
    return members


def saved_members(run_dir: Path, document: dict, splits, class_names: list) -> dict:
    """Stacking-part and PublicTest probabilities of each saved base model and expert."""
    stack, public = splits.stack, splits.tests[0]
    labels = [base["label"] for base in document["preset"]["base_models"]]
    found = {}
    for number, label in enumerate(labels, start=1):
        path = run_dir / "models" / f"base_model_{number}.skfer"
        if not path.exists():
            continue
        tick = time.perf_counter()
        model = skfer.load(path)
        found[label] = (model.predict_proba(stack.images), model.predict_proba(public.images))
        print(f"{label}: {time.perf_counter() - tick:.0f} s", flush=True)
    ensemble = skfer.load(run_dir / "models" / "ensemble.skfer")
    for name, member in ensemble.named_estimators_.items():
        if name.startswith("expert_"):
            estimator = getattr(member, "estimator", member)
            label = class_names[int(name.removeprefix("expert_"))]
            found[f"expert {label}"] = (
                estimator.predict_proba(stack.images),
                estimator.predict_proba(public.images),
            )
    return found


def scratch_throughput(images: int = 2048, repeats: int = 2) -> None:
    """Print the training images per second of a small CNN at 48 px, per precision."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((images, 48, 48, 3), dtype=np.float32)
    y = rng.integers(0, 7, images)
    for precision in ("float32", "mixed_bfloat16"):
        keras.config.set_dtype_policy(precision)
        inputs = keras.Input((48, 48, 3))
        hidden = inputs
        for filters in (32, 64, 128, 256):
            for _ in range(2):
                hidden = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(hidden)
                hidden = keras.layers.ReLU()(keras.layers.BatchNormalization()(hidden))
            hidden = keras.layers.MaxPooling2D(2)(hidden)
        hidden = keras.layers.Dense(256, activation="relu")(
            keras.layers.GlobalAveragePooling2D()(hidden)
        )
        outputs = keras.layers.Dense(7, activation="softmax", dtype="float32")(hidden)
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:256], y[:256], batch_size=64, verbose=0)  # trace
        rates = []
        for _ in range(repeats):
            tick = time.perf_counter()
            model.fit(x, y, batch_size=64, verbose=0)
            rates.append(images / (time.perf_counter() - tick))
        print(
            f"small CNN from scratch, 48 px, {model.count_params():,} parameters, {precision}: "
            f"{max(rates):.0f} training images/s (best of {repeats}); "
            f"{24302 / max(rates) / 60:.1f} min per epoch of the cpu preset's 24,302 fit images",
            flush=True,
        )
    keras.config.set_dtype_policy("float32")


STACKERS = (
    "MLP on probabilities",
    "MLP on probabilities, tol 1e-4",
    "MLP on log-probabilities",
    "logistic regression on log",
    "MLP on probabilities, 5 seeds",
)


def stacker(kind: str, seed: int):
    """One of :data:`STACKERS`: skfer's two stackers, its MLP as it was before it stopped at
    ``tol=MLP_STACKER_TOL`` (scikit-learn's default tol, 1e-4), and the MLP on
    log-probabilities, and the mean of five MLPs (the cpu preset's since 2026-12-04)."""
    if kind == STACKERS[3]:
        return make_stacker(kind="logistic")
    if kind == STACKERS[4]:
        return make_stacker((64, 32), random_state=seed, seeds=5)
    mlp = make_stacker((64, 32), random_state=seed)
    if kind == STACKERS[1]:
        return mlp.set_params(tol=1e-4)
    return mlp if kind == STACKERS[0] else make_pipeline(LogProbabilities(), mlp)


def ablation(
    members: dict, y_stack, y_public, in_training, sets, seed: int, stackers=STACKERS
) -> list:
    """Stacking CV and PublicTest for each member set and stacker input, against the set's
    best member: the one with the highest accuracy on the stacking part, as in ``reproduce``."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    rows = []
    for names in sets:
        stack_accuracy = {
            name: np.mean(members[name][0].argmax(axis=1) == y_stack) for name in names
        }
        best = max(stack_accuracy, key=stack_accuracy.get)
        best_public = members[best][1].argmax(axis=1)
        best_cv = float(stack_accuracy[best])
        x_stack = np.column_stack([members[name][0] for name in names])
        x_public = np.column_stack([members[name][1] for name in names])
        for inputs in stackers:
            cv = cross_val_score(stacker(inputs, seed), x_stack, y_stack, cv=folds).mean()
            predicted = stacker(inputs, seed).fit(x_stack, y_stack).predict(x_public)
            difference = paired_difference(y_public, predicted, best_public, random_state=seed)
            unseen = ~in_training
            rows.append(
                {
                    "members": list(names),
                    "best_member": best,
                    "stacker": inputs,
                    "stacking_cv": float(cv),
                    "stacking_cv_minus_best_argmax": float(cv - best_cv),
                    "public_test": float(np.mean(predicted == y_public)),
                    "public_test_without_copies": float(
                        np.mean(predicted[unseen] == y_public[unseen])
                    ),
                    "minus_best_member": difference,
                }
            )
            print(
                f"{' + '.join(short(name) for name in names):50s} {inputs:30s} "
                f"vs {short(best):18s} "
                f"CV {cv:.4f} ({cv - best_cv:+.4f})  PublicTest {rows[-1]['public_test']:.4f} "
                f"({difference['difference']:+.4f} [{difference['interval'][0]:+.4f}, "
                f"{difference['interval'][1]:+.4f}], p={difference['mcnemar_p_value']:.3f})",
                flush=True,
            )
    return rows


def seed_spread(members: dict, y_stack, sets, seed: int, repeats: int = 5) -> list:
    """The stacking CV of the one-MLP and the five-MLP stacker under ``repeats`` seeds: how much
    of a member set's gain the MLP's initialisation alone moves (the same folds throughout)."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    rows = []
    for names in sets:
        x_stack = np.column_stack([members[name][0] for name in names])
        for inputs in (STACKERS[0], STACKERS[4]):
            scores = [
                cross_val_score(stacker(inputs, seed + k), x_stack, y_stack, cv=folds).mean()
                for k in range(repeats)
            ]
            rows.append({"members": list(names), "stacker": inputs, "stacking_cv": scores})
            print(
                f"{' + '.join(short(name) for name in names):50s} {inputs:30s} "
                f"stacking CV over seeds {seed}..{seed + repeats - 1}: mean "
                f"{np.mean(scores):.4f}, range {min(scores):.4f} to {max(scores):.4f} "
                f"({max(scores) - min(scores):.4f})",
                flush=True,
            )
    return rows


SHORT_NAMES = {  # the first key found in a label names it
    "soft targets": "face soft targets",
    "block 13 fine-tuned": "face block 13",
    "blocks 12 and 13 fine-tuned": "face blocks 12-13",
    "spatial head": "face spatial",
    "frozen": "face frozen",
    "ImageNet": "ImageNet 0.25",
    "random init": "control",
}


def short(label: str) -> str:
    """A member's label, cut to what tells it apart."""
    return next((name for key, name in SHORT_NAMES.items() if key in label), label[:24])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, required=False)
    parser.add_argument("--members", type=Path, help="npz of the members' probabilities")
    parser.add_argument("--out", type=Path, help="JSON file for the ablation rows")
    parser.add_argument(
        "--stackers",
        type=lambda text: [int(i) for i in text.split(",")],
        default=list(range(len(STACKERS))),
        help="comma-separated indices into: "
        + "; ".join(f"{i} {name}" for i, name in enumerate(STACKERS))
        + " (default: all)",
    )
    parser.add_argument("--scratch-throughput", action="store_true")
    args = parser.parse_args()
    if not set(args.stackers) <= set(range(len(STACKERS))):
        parser.error(f"--stackers takes indices 0 to {len(STACKERS) - 1}")
    if args.scratch_throughput:
        scratch_throughput()
        return
    if args.run is None:
        parser.error("--run RUN (a skfer reproduce output folder) or --scratch-throughput")
    members_file = args.members or args.run / "members.npz"
    document, splits, class_names = run_splits(args.run, args.data, args.ferplus_labels)
    seed = document["random_state"]
    minutes = {label: seconds / 60 for label, seconds in document["timings_seconds"].items()}
    members = members_of(args.run, document, splits, class_names, members_file)
    names = list(members)
    best = best_base_member(document, members)
    bases = [name for name in names if not name.startswith("expert") and name != best]
    experts = [name for name in names if name.startswith("expert")]
    sets = [(best,), (best, *experts)]
    sets += [(best, other) for other in bases]
    sets += [(best, *pair) for pair in itertools.combinations(bases, 2)]
    sets += [(best, *bases), (best, *bases, *experts)]
    sets = list(dict.fromkeys(sets))  # without experts, the last two sets are one
    public = splits.tests[0]
    print(
        f"bench_members: {args.run} ({document['dataset']}), {len(splits.stack)} stacking "
        f"images, PublicTest {len(public.target)}; {platform.node()}, {os.cpu_count()} cores, "
        f"{datetime.date.today()}; minutes to train: "
        + ", ".join(f"{short(k)} {v:.1f}" for k, v in minutes.items() if k in members),
        flush=True,
    )
    stackers = [STACKERS[i] for i in args.stackers]
    rows = ablation(
        members, splits.stack.target, public.target, public.in_training, sets, seed, stackers
    )
    spread = seed_spread(members, splits.stack.target, [sets[0], sets[-1]], seed)
    if args.out:
        args.out.write_text(
            json.dumps({"minutes": minutes, "rows": rows, "seed_spread": spread}, indent=1)
        )


if __name__ == "__main__":
    main()
