"""Which accuracy levers pay for a preset's face model, and what do they cost?

    python benchmarks/bench_levers.py [--preset gpu|cpu] [--data FER2013.csv]
                                      [--weights-dir DIR] [--seed 0]
                                      [--variants baseline smoothing mixup ...] [--no-crops]
                                      [--time-limit SECONDS] [--json PATH] [--smoke]

Trains the first base model of ``--preset`` (gpu: the face-trained MobileNet 1.0 fine-tuned
whole at 224 px; cpu: the same backbone with block 13 fine-tuned on cached block-12 maps) as
``skfer reproduce`` does: on the fit part of :func:`skfer.protocol.split_for_run` (the
preset's fractions and ``--seed``), early-stopped on the stopping part. One fit per variant:

- ``baseline``: the preset's parameters (flip test-time augmentation);
- ``smoothing``: ``label_smoothing=0.1``;
- ``mixup``: ``mixup_alpha=0.2`` (it turns the feature caches off: for a GPU);
- ``combined``: both;
- ``seed``: the baseline with seed + 1, and the average of its probabilities and the
  baseline's (a two-member ensemble), when the baseline ran in the same call;
- ``frozen``: no long phase (the head alone on the frozen backbone: 0 blocks trained);
- ``head_512``: a head of (512, 512) instead of (1024, 1024);
- ``cosine``: the long phase's learning rate warmed up and decayed (``long_schedule``);
- ``long_lr_3e-4``: the long phase at 3e-4 instead of the preset's rate;
- ``two_blocks``: ``unfreeze_blocks=2`` (blocks 12 and 13, on cached block-11 maps);
- ``feature_mixup``: ``feature_mixup_alpha=0.4`` (mixup of the cached features and block-12
  maps: the caches stay on, for a CPU);
- ``bfloat16``: ``precision='mixed_bfloat16'`` (the maps computed and the top block trained in
  bfloat16: for CPUs with bfloat16 matrix units);
- ``fit_and_stack``, ``fit_and_stack_seed``: the preset's parameters (seed, seed + 1) trained
  on the fit and stacking parts together (the run's stacking part is held out from its
  stacked members; a model trained on it could be the run's single model, not a member);
- ``fit_less``: the preset's parameters trained on the fit part less as many images as the
  stacking part holds (at most half the fit part; drawn by class), scored on the stopping and
  stacking parts together, which both it and the preset's model hold out: with
  ``--baseline-model`` (that run's saved first base model,
  ``RUN/models/base_model_1.skfer``, trained on the whole fit part), the paired difference
  there says what those images add, on 2.5 times the stopping part's images;
  ``fit_less_seed``: the same with seed + 1 (its own draw of the images left out), against
  ``--baseline-model-seed`` (the run's second seed, ``RUN/models/base_model_2.skfer``).

Every fitted model is scored as the preset predicts (flip test-time augmentation), without the
flip, and, unless ``--no-crops``, with five test-time crops (``test_time_crops=5``, 0.9 of the
side, each with its mirror: 10 views, each a pass of the frozen blocks on a CPU), all through
the feature cache. The fits share that cache, bounded as the preset bounds it
(``feature_cache_bytes``), so a variant reuses the features and maps of an earlier one on the
same images: the first fit's minutes include computing them. The stopping part's accuracy is
the number that chooses; PublicTest is printed as reported, never used to choose.
``--time-limit`` bounds the whole call: training stops in time to score the model (a minute is
kept for that, then 1.2 times the last scoring's time), a variant starts only while a minute
(``--smoke``: 10 s) of training time is left, and one still training when the time runs out
stops there, with its best weights so far, and is marked as cut. ``--smoke`` runs the same on
the smoke preset (20 Training images per class, 48 px, one epoch per phase) and 20 PublicTest
images per class: a couple of minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skfer import TransferCNNClassifier, get_backbone, load  # noqa: E402
from skfer.cache import feature_cache  # noqa: E402
from skfer.datasets import load_fer2013  # noqa: E402
from skfer.metrics import paired_difference  # noqa: E402
from skfer.presets import PRESETS, smoke_preset  # noqa: E402
from skfer.protocol import Part, split_for_run, stratified_rows  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
VARIANTS = {
    "baseline": {},
    "smoothing": {"label_smoothing": 0.1},
    "mixup": {"mixup_alpha": 0.2},
    "combined": {"label_smoothing": 0.1, "mixup_alpha": 0.2},
    "seed": {},  # the baseline's parameters with the next seed
    "frozen": {"long_epochs": 0},
    "head_512": {"head": (512, 512)},
    "cosine": {"long_schedule": "cosine"},
    "long_lr_3e-4": {"long_learning_rate": 3e-4},
    "two_blocks": {"unfreeze_blocks": 2},
    "feature_mixup": {"feature_mixup_alpha": 0.4},
    "bfloat16": {"precision": "mixed_bfloat16"},
    "fit_and_stack": {},
    "fit_and_stack_seed": {},
    "fit_less": {},
    "fit_less_seed": {},
}
# the baseline's parameters with the next seed
NEXT_SEED = {"seed", "fit_and_stack_seed", "fit_less_seed"}
ON_STACK_PART_TOO = {"fit_and_stack", "fit_and_stack_seed"}
FIT_LESS = {"fit_less": "baseline_model", "fit_less_seed": "baseline_model_seed"}
CROPS = {"test_time_crops": 5, "test_time_crop_fraction": 0.9}


class Deadline(keras.callbacks.Callback):
    """Stop training at ``deadline`` (``time.monotonic()``) the way Ctrl-C does: the fit keeps
    its best weights so far and skips its later phases. A phase does not start (nor compile
    its training step) with under ``least`` seconds left."""

    def __init__(self, deadline: float, least: float):
        super().__init__()
        self.deadline, self.least = deadline, least
        self.reached = self.starting = False

    def on_train_begin(self, logs=None):
        self.starting = True  # raising here would precede Keras' History: wait for the epoch

    def on_epoch_begin(self, epoch, logs=None):
        if self.starting and self.deadline - time.monotonic() < self.least:
            self._stop()
        self.starting = False

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self._stop()

    def _stop(self):
        self.reached = True
        raise KeyboardInterrupt


def face_model_params(name: str, smoke: bool, weights_dir: Path) -> tuple[dict, object]:
    """The preset's (or its smoke version's) face model parameters, with the weight file
    from ``weights_dir``, and the preset."""
    preset = smoke_preset(PRESETS[name]) if smoke else PRESETS[name]
    params = dict(preset.base_models[0].params)
    spec = get_backbone(params["backbone"])
    found = sorted(weights_dir.rglob(spec.weights[spec.default_weights].file_name))
    if not found:
        raise SystemExit(f"no {spec.weights[spec.default_weights].file_name} under {weights_dir}")
    return {**params, "weights": str(found[0])}, preset


def accuracy(proba: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == target))


def scores(clf, splits, crops: bool) -> dict:
    """Stopping-part and PublicTest probabilities through the feature cache: with the preset's
    test-time augmentation, without the flip, and with five crops added (``crops``)."""
    stop, public = splits.stop, splits.tests[0]
    plain = clf.get_params()
    views = {"tta": {}, "no_flip": {"test_time_flip": False}}
    if crops:
        views["crops"] = CROPS
    found = {}
    clf.set_params(cache_predictions=True)
    for name, tta in views.items():
        clf.set_params(**tta)
        found[name] = (clf.predict_proba(stop.images), clf.predict_proba(public.images))
        clf.set_params(**{key: plain[key] for key in tta})
    clf.set_params(cache_predictions=plain["cache_predictions"])
    return found


def held_out_comparison(clf, baseline_path: str, splits, seed: int) -> dict:
    """``clf`` against the saved model at ``baseline_path`` on the stopping and stacking parts
    together (with each one's test-time augmentation), paired image by image."""
    parts = (splits.stop, splits.stack)
    target = np.concatenate([part.target for part in parts])
    # Part by part: each part's maps are one array in the feature cache; a concatenation's
    # rows would lie in two of them, and the cache serves rows of one array only.
    clf.set_params(cache_predictions=True)
    ours = np.concatenate([clf.predict(part.images) for part in parts])
    baseline = load(baseline_path)
    theirs = np.concatenate([baseline.predict(part.images) for part in parts])
    return {
        "images": len(target),
        "accuracy": float(np.mean(ours == target)),
        "baseline_accuracy": float(np.mean(theirs == target)),
        "paired": paired_difference(target, ours, theirs, random_state=seed),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--data", default=str(SHARED / "data/fer2013/fer2013.csv.gz"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=["baseline", "smoothing", "mixup"]
    )
    parser.add_argument("--no-crops", action="store_true", help="skip the 5-crop scoring")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the call")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--baseline-model",
        default=None,
        help="a run's saved first base model, for fit_less (RUN/models/base_model_1.skfer)",
    )
    parser.add_argument(
        "--baseline-model-seed",
        default=None,
        help="that run's second seed, for fit_less_seed (RUN/models/base_model_2.skfer)",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    end = None if args.time_limit is None else start + args.time_limit
    least = 10 if args.smoke else 60  # seconds of training a variant needs to start
    reserve = 20 if args.smoke else 60  # seconds kept for scoring, until one is timed

    def say(message):
        print(f"[bench_levers {time.monotonic() - start:6.0f} s] {message}", flush=True)

    params, preset = face_model_params(args.preset, args.smoke, Path(args.weights_dir))
    # The preset's cache bound, as skfer reproduce sets it: under the default one the cpu
    # preset's maps of the training images and their mirror images are not kept, and every
    # phase and variant would compute them again.
    feature_cache.max_bytes = max(feature_cache.max_bytes, preset.feature_cache_bytes or 0)
    say(
        f"keras {keras.__version__} on {keras.backend.backend()}, {platform.node()}; preset "
        f"{preset.name}: {params}"
    )
    fer = load_fer2013(args.data, splits=["Training", "PublicTest"])
    test = np.arange(len(fer.public_test.target))
    if args.smoke:  # 20 per class: scoring all of PublicTest in 12 views takes minutes on a CPU
        test = stratified_rows(fer.public_test.target, 20, args.seed)
    splits = split_for_run(
        Part(fer.train.images, fer.train.target),
        {"PublicTest": (fer.public_test.images[test], fer.public_test.target[test])},
        stop_fraction=preset.stop_fraction,
        stack_fraction=preset.stack_fraction,
        seed=args.seed,
        per_class=preset.train_per_class,
    )
    fit, stop, public = splits.fit, splits.stop, splits.tests[0]
    say(f"{len(fit)} fit, {len(stop)} stop (chooses), {len(public.target)} PublicTest (reported)")

    results, probabilities, skipped = [], {}, []
    for variant in args.variants:
        deadline = None if end is None else end - reserve
        if deadline is not None and deadline - time.monotonic() < least:
            skipped.append(variant)
            say(f"{variant} skipped: under {least} s of the time limit left")
            continue
        seed = args.seed + (variant in NEXT_SEED)
        train = fit
        if variant in ON_STACK_PART_TOO:
            train = Part(
                np.concatenate([fit.images, splits.stack.images]),
                np.concatenate([fit.target, splits.stack.target]),
            )
        if variant in FIT_LESS:
            removed = min(len(splits.stack), len(fit) // 2)
            kept, _ = train_test_split(
                np.arange(len(fit)), test_size=removed, stratify=fit.target, random_state=seed
            )
            kept = np.sort(kept)
            train = Part(fit.images[kept], fit.target[kept])
        clf = TransferCNNClassifier(**{**params, **VARIANTS[variant]}, random_state=seed, verbose=1)
        callbacks = [] if deadline is None else [Deadline(deadline, least)]
        say(
            f"{variant}: fitting {VARIANTS[variant] or 'the preset as it is'}, seed {seed}, on "
            f"{len(train)} images"
        )
        tick = time.monotonic()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Training was interrupted")
            clf.fit(
                train.images, train.target, validation_data=(stop.images, stop.target),
                callbacks=callbacks,
            )  # fmt: skip
        minutes = (time.monotonic() - tick) / 60
        tick = time.monotonic()
        found = scores(clf, splits, crops=not args.no_crops)
        reserve = 1.2 * (time.monotonic() - tick)
        probabilities[variant] = found["tta"]
        row = {
            "variant": variant,
            "params": VARIANTS[variant],
            "seed": seed,
            "training_images": len(train),
            "fit_minutes": round(minutes, 2),
            "predict_minutes": round((time.monotonic() - tick) / 60, 2),
            "epochs": [clf.history_["phase"].count(p) for p in ("short", "long")],
            "cut_at_time_limit": bool(callbacks and callbacks[0].reached),
            **{
                f"{split}{'' if view == 'tta' else '_' + view}": accuracy(
                    found[view][index], part.target
                )
                for view in found
                for index, (split, part) in enumerate((("stop", stop), ("public_test", public)))
            },
        }
        results.append(row)
        say(
            f"{variant}: stop {row['stop']:.4f}, PublicTest {row['public_test']:.4f} ("
            + "; ".join(
                f"{view.replace('_', ' ')}: stop {row['stop_' + view]:.4f}, PublicTest "
                f"{row['public_test_' + view]:.4f}"
                for view in found
                if view != "tta"
            )
            + f"); fit {minutes:.1f} min, {row['epochs'][0]} + {row['epochs'][1]} epochs"
            + (", cut at the time limit" if row["cut_at_time_limit"] else "")
        )
        baseline_model = getattr(args, FIT_LESS.get(variant, ""), None)
        if baseline_model:
            row["held_out_both"] = held_out_comparison(clf, baseline_model, splits, seed)
            say(f"{variant} against {baseline_model}: {row['held_out_both']}")
        if variant == "seed" and "baseline" in probabilities:
            stop_mean, public_mean = (
                (a + b) / 2
                for a, b in zip(probabilities["baseline"], probabilities["seed"], strict=True)
            )
            row["ensemble_stop"] = accuracy(stop_mean, stop.target)
            row["ensemble_public_test"] = accuracy(public_mean, public.target)
            say(
                f"baseline + seed {seed}, probabilities averaged: stop {row['ensemble_stop']:.4f}"
                f", PublicTest {row['ensemble_public_test']:.4f}"
            )

    extra = ["no_flip"] + ([] if args.no_crops else ["crops"])
    titles = {"no_flip": "without the flip", "crops": "+ 5 crops"}
    print(
        "\n| variant | epochs | stop | "
        + "".join(f"stop, {titles[view]} | " for view in extra)
        + "PublicTest | "
        + "".join(f"PublicTest, {titles[view]} | " for view in extra)
        + "fit min | predict min |"
    )
    print("|---" * (6 + 2 * len(extra)) + "|")
    for row in results:
        cut = " (cut)" if row["cut_at_time_limit"] else ""
        print(
            f"| {row['variant']}{cut} | {row['epochs'][0]} + {row['epochs'][1]} | "
            f"{row['stop']:.4f} | "
            + "".join(f"{row['stop_' + view]:.4f} | " for view in extra)
            + f"{row['public_test']:.4f} | "
            + "".join(f"{row['public_test_' + view]:.4f} | " for view in extra)
            + f"{row['fit_minutes']:.1f} | {row['predict_minutes']:.1f} |"
        )
    if skipped:
        names = " ".join(skipped)
        print(f"\nnot run (time limit): {names}; run them with --variants {names}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        document = {
            "backend": keras.backend.backend(),
            "preset": args.preset,
            "smoke": args.smoke,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
            "results": results,
            "skipped": skipped,
        }
        Path(args.json).write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
