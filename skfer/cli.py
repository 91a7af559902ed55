"""The ``skfer`` command line: train, evaluate, predict and reproduce.

    skfer train --data fer2013.csv.gz --backbone mobilenet --out model.skfer
    skfer evaluate model.skfer --data fer2013.csv.gz
    skfer predict model.skfer photo.jpg --annotate faces.png
    skfer predict model.skfer photos/ clip.mp4 --csv --out faces.csv
    skfer reproduce --preset quick

Exit codes: 0 success; 1 unexpected error (a bug); 2 usage error (bad option, missing input
file or package); 3 weights could not be downloaded; 4 invalid data, model, weight or image
file (predict: some photo or video failed); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import __version__
from .datasets import FER2013_CLASSES, SPLIT_ATTRIBUTES
from .errors import DataFileError
from .paths import DATA_FILES, skfer_home

__all__ = ["build_parser", "main"]

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DOWNLOAD_FAILED = 3
EXIT_INVALID_FILE = 4
EXIT_INTERRUPTED = 130
DEFAULT_MIN_FACE = 30  # pixels: skfer.faces.predict_paths' default

_PRESETS = ("cpu", "gpu", "paper", "quick")  # sorted(skfer.reproduce.PRESETS), without importing TF
_STACKERS = ("mlp", "standardized_mlp", "logistic")  # skfer.ensemble.STACKERS, without TF
_DISTRIBUTIONS = ("data_parallel", "mirrored")  # skfer.distribute.DISTRIBUTIONS but None, as above
_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # skfer.classifier.PRECISIONS
_SCHEDULES = ("constant", "cosine")  # skfer.training.SCHEDULES
_STOPPING_METRICS = ("accuracy", "balanced_accuracy")  # skfer.stopping.STOPPING_METRICS
_FER2013_FOLDERS = {"train", "test"}  # subfolders of the Kaggle FER2013 image folder
_FACE_OPTIONS = ("crop_faces", "min_face", "on_no_face")  # evaluate's options for photo folders
# skfer train's options (argparse dest) and the TransferCNNClassifier parameters they set:
# those passed on where given, the switches always, and those whose values _classifier
# converts (same name).
_TRAIN_OPTIONS = {
    "input_size": "input_size",
    "short_epochs": "short_epochs",
    "long_epochs": "long_epochs",
    "short_lr": "short_learning_rate",
    "long_lr": "long_learning_rate",
    "batch_size": "batch_size",
    "distribution": "distribution",
    "unfreeze_blocks": "unfreeze_blocks",
    "patience": "patience",
    "stopping_metric": "stopping_metric",
    "long_schedule": "long_schedule",
    "average_last_epochs": "average_last_epochs",
    "precision": "precision",
    "test_time_crops": "test_time_crops",
    "label_smoothing": "label_smoothing",
    "mixup_alpha": "mixup_alpha",
    "feature_mixup_alpha": "feature_mixup_alpha",
}
_TRAIN_SWITCHES = {
    "augment": "augmentation",
    "flip_augment": "flip_augmentation",
    "test_time_flip": "test_time_flip",
}
_TRAIN_CONVERTED = ("backbone", "weights", "head")


def _number(kind: Callable, low: float, high: float = math.inf, *, open_low: bool = False):
    """An argparse ``type``: ``kind(text)`` within ``[low, high)`` (``(low, high)``: open_low)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (low < value if open_low else low <= value) or not value < high:
            bound = f"> {low}" if open_low else f">= {low}"
            bound += "" if high == math.inf else f" and < {high}"
            raise argparse.ArgumentTypeError(f"must be {kind.__name__} {bound}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_COUNT = _number(int, 0)
_POSITIVE = _number(int, 1)
_RATE = _number(float, 0, open_low=True)
_FRACTION = _number(float, 0, 1, open_low=True)
_SEED_MAX = 2**32 - 1  # numpy's and TransferCNNClassifier's random_state range


def _seed(text: str) -> int:
    """An argparse ``type``: an integer seed in ``0..2**32 - 1``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= _SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer in 0..{_SEED_MAX} (2**32 - 1), got {text!r}"
        )
    return value


_seed.__name__ = "int"


def _photo_folder(args: argparse.Namespace, *, size: int, gray: bool):
    """``--data FOLDER``'s photos (``load_image_folder``), with the face-cropping options;
    says how many photos had no face."""
    from .datasets import load_image_folder

    data = load_image_folder(
        args.data,
        size=size,
        gray=gray,
        crop_faces=args.crop_faces,
        min_face=getattr(args, "min_face", DEFAULT_MIN_FACE),
        on_no_face=getattr(args, "on_no_face", "error"),
    )
    if data.no_face:
        _progress(args, f"left out {len(data.no_face)} photo(s) without a face")
    _progress(args, data.DESCR)
    return data


def _add_face_cropping(group, crop_help: str) -> None:
    """``--crop-faces``, ``--min-face`` and ``--on-no-face`` of a photo-folder option group."""
    group.add_argument("--crop-faces", action="store_true", help=crop_help)
    group.add_argument(
        "--min-face",
        type=_number(int, 12),
        metavar="PX",
        help=f"with --crop-faces: smallest face searched for, in pixels (default: "
        f"{DEFAULT_MIN_FACE})",
        default=argparse.SUPPRESS,
    )
    group.add_argument(
        "--on-no-face",
        choices=("error", "skip"),
        help="with --crop-faces, photos without a face: stop with an error listing them "
        "(default), or leave them out",
        default=argparse.SUPPRESS,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``skfer`` argument parser with its four sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress output")
    parser = argparse.ArgumentParser(
        prog="skfer",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a classifier on FER2013's Training split or on your own photos",
        description="Train a TransferCNNClassifier on the Training split (or on a folder of "
        "your own photos, one subfolder per class), with a stratified part held out for early "
        "stopping, and save it; print the held-out accuracy and the accuracy on each test "
        "split of --data (never used in training). Unset options keep TransferCNNClassifier's "
        "defaults.",
    )
    train.add_argument(
        "--data",
        required=True,
        help="FER2013 CSV (.csv or .csv.gz) or image folder (train/, test/), or a folder of "
        "your own photos with one subfolder per class (the class names)",
    )
    train.add_argument("--backbone", required=True, help="a name from skfer.list_backbones()")
    train.add_argument(
        "--weights",
        default="default",
        help="a weight source of the backbone, a local weight file, or 'none' for random "
        "initialisation (default: the backbone's default source)",
    )
    _suppressed = dict(default=argparse.SUPPRESS)
    train.add_argument("--input-size", type=_POSITIVE, help="input side in px", **_suppressed)
    train.add_argument("--short-epochs", type=_COUNT, help="frozen-backbone epochs", **_suppressed)
    train.add_argument("--long-epochs", type=_COUNT, help="fine-tuning epochs", **_suppressed)
    train.add_argument("--short-lr", type=_RATE, help="short-phase learning rate", **_suppressed)
    train.add_argument("--long-lr", type=_RATE, help="long-phase learning rate", **_suppressed)
    train.add_argument("--batch-size", type=_POSITIVE, help="images per step", **_suppressed)
    train.add_argument(
        "--head",
        type=_POSITIVE,
        nargs="+",
        metavar="UNITS",
        help="hidden layer sizes of the head, e.g. --head 256 256",
        **_suppressed,
    )
    train.add_argument(
        "--unfreeze-blocks",
        type=_COUNT,
        metavar="N",
        help="fine-tune only the top N backbone blocks in the long phase",
        **_suppressed,
    )
    train.add_argument(
        "--patience", type=_COUNT, help="epochs without improvement before stopping", **_suppressed
    )
    train.add_argument(
        "--stopping-metric",
        choices=_STOPPING_METRICS,
        help="validation score that early stopping follows",
        **_suppressed,
    )
    train.add_argument(
        "--long-schedule",
        choices=_SCHEDULES,
        help="long-phase learning rate: constant, or warm-up then cosine decay",
        **_suppressed,
    )
    train.add_argument(
        "--average-last-epochs",
        type=_number(int, 2),
        metavar="N",
        help="end the long phase on the mean of its last N epochs' weights where that scores "
        "at least as well on the held-out images as its best epoch",
        **_suppressed,
    )
    train.add_argument("--precision", choices=_PRECISIONS, help="Keras dtype policy", **_suppressed)
    train.add_argument("--augment", action="store_true", help="random mirror, shift, rotate, zoom")
    train.add_argument(
        "--flip-augment",
        action="store_true",
        help="random mirror images alone (keeps the feature cache; not with --augment)",
    )
    train.add_argument(
        "--test-time-flip",
        action="store_true",
        help="average each image's probabilities with its mirror image's",
    )
    train.add_argument(
        "--test-time-crops",
        type=int,
        choices=(1, 5),
        help="5: also average four corner crops and a centre crop (with --test-time-flip "
        "their mirror images too)",
        **_suppressed,
    )
    train.add_argument(
        "--label-smoothing",
        type=_number(float, 0, 1),
        metavar="EPS",
        help="smooth the training targets by EPS (0 <= EPS < 1)",
        **_suppressed,
    )
    train.add_argument(
        "--mixup-alpha",
        type=_number(float, 0),
        metavar="ALPHA",
        help="mix each training batch with a shuffled copy of itself, weights ~ Beta(ALPHA, "
        "ALPHA) (0: off; turns the feature cache off)",
        **_suppressed,
    )
    train.add_argument(
        "--feature-mixup-alpha",
        type=_number(float, 0),
        metavar="ALPHA",
        help="mix the cached features and block maps that the trained layers read, as "
        "--mixup-alpha mixes images (keeps the feature cache; not with --augment)",
        **_suppressed,
    )
    train.add_argument(
        "--distribution",
        choices=_DISTRIBUTIONS,
        help="train on every device at once: data_parallel (JAX or TensorFlow), mirrored "
        "(TensorFlow only); see TransferCNNClassifier's distribution",
        **_suppressed,
    )
    train.add_argument(
        "--limit-per-class", type=_POSITIVE, metavar="N", help="use at most N images per class"
    )
    train.add_argument(
        "--holdout",
        type=_FRACTION,
        default=0.1,
        metavar="FRACTION",
        help="part of Training (or of the photos) held out for early stopping (default: "
        "%(default)s)",
    )
    photos = train.add_argument_group("your own photos (--data FOLDER/<class>/*.jpg)")
    photos.add_argument(
        "--image-size",
        type=_POSITIVE,
        metavar="PX",
        help="side the photos are resized to (default: --input-size, else the backbone's)",
        **_suppressed,
    )
    photos.add_argument("--gray", action="store_true", help="load the photos as gray images")
    _add_face_cropping(photos, "crop each photo to its largest face first")
    train.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    train.add_argument("--out", required=True, metavar="MODEL.skfer", help="model file to write")
    train.set_defaults(run=_train, parser=train, inputs={"data": "--data"})

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score a model on FER2013 splits or on a folder of labelled photos",
        description="Print accuracy, macro precision, recall and F1 and per-class recall, per "
        "split of FER2013 data or on a folder of labelled photos (one subfolder per class, "
        "named after the model's classes).",
    )
    evaluate.add_argument("model", metavar="MODEL", help="an .skfer model file")
    evaluate.add_argument(
        "--data",
        required=True,
        help="FER2013 CSV (.csv or .csv.gz) or image folder (train/, test/), or a folder of "
        "labelled photos with one subfolder per class (the model's class names)",
    )
    evaluate.add_argument(
        "--split",
        nargs="+",
        action="extend",
        choices=list(SPLIT_ATTRIBUTES),
        help="FER2013 splits to score (default: every split but Training in --data)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    labelled = evaluate.add_argument_group("labelled photos (--data FOLDER/<class>/*.jpg)")
    _add_face_cropping(
        labelled, "crop each photo to its largest face first (as for a model trained with it)"
    )
    evaluate.set_defaults(
        run=_evaluate, parser=evaluate, inputs={"model": "MODEL", "data": "--data"}
    )

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="find faces in photos, folders and videos and classify their expressions",
        description="Print each face's box, most probable class and class probabilities, per "
        "photo and video frame; the faces of all inputs are classified in batches. A file that "
        "cannot be read is reported and the others still are; the exit code is then 4.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help="an .skfer model file, or the --out folder of skfer reproduce (the model its "
        "results.json recommends: its ensemble, which is its best member where the stack did "
        "not beat that member)",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="INPUT",
        help="photos (PNG, JPEG, GIF, BMP), folders of photos (searched recursively) or videos "
        "(.mp4, .avi, .mov, .mkv, .webm, ...)",
    )
    layout = predict.add_mutually_exclusive_group()
    layout.add_argument(
        "--json", action="store_true", help="print JSON: one entry per photo or video frame"
    )
    layout.add_argument("--csv", action="store_true", help="print CSV: one row per face")
    predict.add_argument(
        "--min-face",
        type=_number(int, 12),
        metavar="PX",
        help=f"smallest face searched for, in pixels (default: {DEFAULT_MIN_FACE})",
    )
    predict.add_argument(
        "--whole-image",
        action="store_true",
        help="take each photo and frame as one face that is already cropped (FER2013-style "
        "images): no face detection, no mtcnn needed",
    )
    predict.add_argument(
        "--every",
        type=_POSITIVE,
        default=10,
        metavar="N",
        help="read every Nth frame of a video, from the first (default: %(default)s)",
    )
    predict.add_argument("--out", metavar="FILE", help="write the results to FILE, not stdout")
    predict.add_argument(
        "--annotate",
        metavar="OUT.png",
        help="write each photo with boxes and labels (several inputs: OUT_1.png, OUT_2.png, ...;"
        " video frames are not drawn)",
    )
    predict.set_defaults(run=_predict, parser=predict, inputs={"model": "MODEL", "images": "INPUT"})

    home = skfer_home()  # see skfer.paths: --data and --weights-dir default into it
    reproduce = commands.add_parser(
        "reproduce",
        parents=[common],
        help="reproduce the study's results table",
        description="Train the preset's base models, experts and ensemble; write results.md, "
        "results.json and figures into --out (as examples/reproduce_table.py).",
    )
    reproduce.add_argument("--preset", choices=_PRESETS, default="quick")
    reproduce.add_argument(
        "--data",
        default=str(home / DATA_FILES["fer2013"]),
        help="FER2013 CSV (.csv or .csv.gz) or folder (default: %(default)s)",
    )
    reproduce.add_argument(
        "--test",
        help="extra CSV whose PublicTest / PrivateTest rows are scored as their own splits "
        "(Training rows in it are not scored)",
    )
    reproduce.add_argument(
        "--test-ferplus-labels",
        metavar="VOTES.csv",
        help="with --dataset ferplus: the --test file's FER+ votes (fer2013new.csv layout, rows "
        "aligned with the test file), to score it on FER+ majority labels",
    )
    reproduce.add_argument(
        "--dataset",
        choices=("fer2013", "ferplus"),
        default="fer2013",
        help="labels: FER2013's own, or the FER+ majority votes (default: %(default)s)",
    )
    reproduce.add_argument(
        "--ferplus-labels",
        metavar="FER2013NEW.csv",
        help="FER+'s fer2013new.csv: the labels with --dataset ferplus; on FER2013, the "
        "Training images' FER+ votes for the preset's members that train on them (without "
        "it they are skipped) (default: "
        f"{home / DATA_FILES['ferplus']}; on FER2013 only with the default --data)",
    )
    reproduce.add_argument("--out", default="runs/reproduce", help="output folder")
    reproduce.add_argument(
        "--weights-dir",
        default=str(home / DATA_FILES["weights"]),
        help="folder with offline weight files (default: %(default)s)",
    )
    reproduce.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    reproduce.add_argument(
        "--stacker",
        choices=_STACKERS,
        help="the ensemble's final estimator: the study's MLP (the presets' default on "
        "FER2013), the MLP on standardized probabilities (the cpu preset's on FER+) or a "
        "logistic regression on the members' log-probabilities",
    )
    reproduce.add_argument(
        "--smoke",
        action="store_true",
        help="shrink the preset to a minute or two on a CPU (same code, tiny data and sizes)",
    )
    reproduce.set_defaults(
        run=_reproduce,
        parser=reproduce,
        inputs={
            "data": "--data",
            "test": "--test",
            "ferplus_labels": "--ferplus-labels",
            "test_ferplus_labels": "--test-ferplus-labels",
        },
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Every error ends in one ``error:`` line on stderr and the exit code of the module
    docstring, never in a traceback.
    """
    args = build_parser().parse_args(argv)
    for dest, label in args.inputs.items():
        values = getattr(args, dest)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and not Path(value).exists():
                args.parser.error(f"{label} {value}: no such file or folder")
    try:
        _start_backend(args)
        from .backbones import WeightsDownloadError, WeightsFileError
        from .backend import BackendError

        try:
            return args.run(args)
        except BackendError as error:  # e.g. --preset gpu without a GPU
            return _fail(error, EXIT_USAGE)
        except WeightsDownloadError as error:
            hint = " On the command line: --weights PATH." if args.command == "train" else ""
            return _fail(f"{error}{hint}", EXIT_DOWNLOAD_FAILED)
        except WeightsFileError as error:
            return _fail(error, EXIT_INVALID_FILE)
    except DataFileError as error:
        return _fail(error, EXIT_INVALID_FILE)
    except OSError as error:  # a file that cannot be read or written
        return _fail(error, EXIT_INVALID_FILE)
    except ImportError as error:  # a missing optional package; the message says which
        return _fail(error, EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # a bug: still one line, which names it as such
        return _fail(
            f"unexpected {type(error).__name__}: {error} (a bug in skfer; please report it "
            "with the command line)",
            EXIT_UNEXPECTED,
        )


def _fail(message: object, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _start_backend(args: argparse.Namespace) -> None:
    """Start Keras' backend quietly: TensorFlow unless ``KERAS_BACKEND`` names another."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        _start_tensorflow(args)
        return
    import keras

    devices = ""
    if keras.backend.backend() == "jax":
        import jax

        devices = f" ({', '.join(sorted({device.platform for device in jax.devices()}))})"
    _progress(args, f"Keras {keras.__version__} on {keras.backend.backend()}{devices}")


def _start_tensorflow(args: argparse.Namespace) -> None:
    """Import TensorFlow without its start-up log; say which device it uses unless quiet.

    TensorFlow's C++ start-up lines (absl, oneDNN, CUDA drivers, ``cuInit``) ignore
    ``TF_CPP_MIN_LOG_LEVEL``, so file descriptor 2 goes to /dev/null while it starts; its
    Python warnings (``tf.function`` retracing, absl) are limited to errors.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    _progress(
        args, f"TensorFlow {tf.__version__} on {f'{len(gpus)} GPU(s)' if gpus else 'the CPU'}"
    )


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null inside the block (Python's sys.stderr too)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (e.g. some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _progress(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def _classifier(args: argparse.Namespace, weights: str | None):
    """The classifier ``skfer train``'s options describe, its parameters checked before any
    data loads: one it refuses is a usage error that names the options setting them."""
    from .classifier import TransferCNNClassifier

    clf = TransferCNNClassifier(
        args.backbone,
        weights=weights,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        **({"head": tuple(args.head)} if "head" in args else {}),
        **{param: getattr(args, dest) for dest, param in _TRAIN_SWITCHES.items()},
        **{param: getattr(args, dest) for dest, param in _TRAIN_OPTIONS.items() if dest in args},
    )
    try:
        clf._check_params()
    except ValueError as error:
        dests = {**_TRAIN_OPTIONS, **_TRAIN_SWITCHES, **{name: name for name in _TRAIN_CONVERTED}}
        flags = {param: f"--{dest.replace('_', '-')}" for dest, param in dests.items()}
        received = str(error).rpartition("Received:")[2]  # the values it refused, by name
        positions = {
            param: match.start()
            for param in flags
            if (match := re.search(rf"(?<!\w){param}=", received))
        }
        named = [f"{flags[param]} sets {param}" for param in sorted(positions, key=positions.get)]
        args.parser.error(f"{error}" + (f" ({'; '.join(named)})" if named else ""))
    return clf


def _train(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.model_selection import train_test_split

    from .backbones import get_backbone, list_backbones
    from .backend import BackendError
    from .datasets import load_fer2013
    from .distribute import make_strategy
    from .protocol import stratified_rows

    if args.backbone not in list_backbones():
        args.parser.error(
            f"--backbone {args.backbone!r} is unknown; choose one of: {', '.join(list_backbones())}"
        )
    spec = get_backbone(args.backbone)
    weights = None if args.weights.lower() == "none" else args.weights
    if weights not in (None, "default", *spec.weights) and not Path(weights).exists():
        args.parser.error(
            f"--weights {weights}: no such file, and not a weight source of {args.backbone} "
            f"({', '.join(['default', *spec.weights, 'none'])})"
        )

    clf = _classifier(args, weights)
    if "distribution" in args:  # a wrong backend or batch size is a usage error, found early
        try:
            make_strategy(args.distribution, batch_size=clf.batch_size)
        except (BackendError, ValueError) as error:
            args.parser.error(f"--distribution {args.distribution}: {error}")
    own_photos = _is_photo_folder(Path(args.data))
    photo_options = ("image_size", "gray", "crop_faces", "min_face", "on_no_face")
    given = [f"--{dest.replace('_', '-')}" for dest in photo_options if getattr(args, dest, False)]
    if given and not own_photos:
        args.parser.error(
            f"{' and '.join(given)}: only for a folder of your own photos (one subfolder per "
            f"class); {args.data} is FER2013 data"
        )
    if not args.crop_faces and ("min_face" in args or "on_no_face" in args):
        args.parser.error("--min-face and --on-no-face go with --crop-faces")

    if own_photos:
        size = getattr(args, "image_size", getattr(args, "input_size", spec.default_input_size))
        data = _photo_folder(args, size=size, gray=args.gray)
        images, target = data.images, np.asarray(data.class_names)[data.target]
        tests, part = [], "the photos"
    else:
        data = load_fer2013(args.data)
        if "train" not in data:
            return _fail(
                f"{args.data} has no Training rows (it holds {list(data.splits)}); pass a "
                "FER2013 file with Training rows to train on",
                EXIT_INVALID_FILE,
            )
        images, target = data.train.images, data.train.target
        tests = [data[SPLIT_ATTRIBUTES[usage]] for usage in data.splits if usage != "Training"]
        part = "Training"
    if args.limit_per_class is not None:
        rows = stratified_rows(target, args.limit_per_class, args.seed)
        images, target = images[rows], target[rows]
    try:
        images, X_val, target, y_val = train_test_split(
            images, target, test_size=args.holdout, stratify=target, random_state=args.seed
        )
    except ValueError as error:
        return _fail(
            f"cannot hold out {args.holdout:g} of {len(target)} "
            f"{'photos' if own_photos else 'Training images'} with every class in both parts "
            f"({error}); pass a larger --holdout or --limit-per-class",
            EXIT_USAGE,
        )
    held_out = f"held-out {args.holdout:.0%} of {part} (early stopping)"

    _progress(args, f"training {args.backbone} on {len(target)} images; validation: {held_out}")
    clf.fit(images, target, validation_data=(X_val, y_val))
    path = clf.save(args.out)
    print(f"{held_out} accuracy: {clf.score(X_val, y_val):.4f} ({len(y_val)} images)")
    for split in tests:
        print(
            f"{split.usage} accuracy (test split, not used in training): "
            f"{clf.score(split.images, split.target):.4f} ({len(split.target)} images)"
        )
    print(f"saved {path}")
    return 0


def _is_photo_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of class subfolders, not FER2013's train/ and test/."""
    if not path.is_dir():
        return False
    names = {
        entry.name.lower()
        for entry in path.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    }
    return not names <= _FER2013_FOLDERS


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .datasets import load_fer2013
    from .metrics import evaluate, results_table
    from .persistence import load

    own_photos = _is_photo_folder(Path(args.data))
    given = [f"--{dest.replace('_', '-')}" for dest in _FACE_OPTIONS if getattr(args, dest, False)]
    if given and not own_photos:
        args.parser.error(
            f"{' and '.join(given)}: only for a folder of labelled photos (one subfolder per "
            f"class); {args.data} is FER2013 data"
        )
    if own_photos and args.split:
        args.parser.error(
            f"--split: only for FER2013 data; the photos in {args.data} are scored as one set"
        )
    if not args.crop_faces and ("min_face" in args or "on_no_face" in args):
        args.parser.error("--min-face and --on-no-face go with --crop-faces")

    clf = load(args.model)
    classes = np.asarray(clf.classes_)
    fer2013 = classes.dtype.kind in "iu" and set(classes.tolist()) <= set(
        range(len(FER2013_CLASSES))
    )
    if fer2013:
        class_names, labels = FER2013_CLASSES, list(range(len(FER2013_CLASSES)))
    elif classes.dtype.kind in "iu":
        return _fail(
            f"{args.model} predicts the class indices {classes.tolist()}, not FER2013's 0..6, "
            "and holds no names for them; score it in Python with skfer.metrics.evaluate "
            "(class_names=...)",
            EXIT_INVALID_FILE,
        )
    else:
        labels = classes.tolist()
        class_names = [str(label) for label in labels]
    if own_photos:
        sets = [_labelled_photos(args, clf, class_names, labels, fer2013)]
        note = f"the scores on {sets[0][0]} are"
    elif not fer2013:
        return _fail(
            f"{args.model} predicts its own classes {class_names}, not FER2013's; score it on "
            "a folder of labelled photos with one subfolder per class, named after them: "
            f"--data photos/ (photos/{class_names[0]}/*.jpg, ...)",
            EXIT_INVALID_FILE,
        )
    else:
        data = load_fer2013(args.data, splits=args.split)
        splits = args.split or [usage for usage in data.splits if usage != "Training"]
        if not splits:
            args.parser.error(f"{args.data} holds only Training rows; pass --split Training")
        sets = [
            (usage, data[SPLIT_ATTRIBUTES[usage]].images, data[SPLIT_ATTRIBUTES[usage]].target)
            for usage in dict.fromkeys(splits)
        ]
        tests = [usage for usage, _, _ in sets if usage != "Training"]
        note = f"{', '.join(tests)} scores are" if tests else None
    if note is not None:
        _progress(
            args,
            f"note: {note} test scores only if the model never used these images to train, "
            "stop early or choose settings (skfer train and skfer reproduce do not)",
        )
    results = []
    for name, images, target in sets:
        _progress(args, f"predicting {name} ({len(target)} images)")
        result = evaluate(
            target,
            clf.predict(images),
            model=Path(args.model).name,
            split=name,
            class_names=class_names,
            labels=labels,
        )
        if name == "Training" and not own_photos:
            result["note"] = "training data of skfer train: not a test score"
        results.append(result)
    sys.stdout.write(json.dumps(results, indent=2) + "\n" if args.json else results_table(results))
    return 0


def _labelled_photos(args: argparse.Namespace, clf, class_names, labels, fer2013: bool):
    """The photos of ``--data``, one subfolder per class, at the model's input size and
    colour, as ``(name, images, target)`` with the model's labels; a folder that names no
    class of the model is a ``DataFileError`` naming it and the model's classes."""
    import numpy as np

    def key(name: str) -> str:  # FER2013 class folders in any case, as load_fer2013 reads them
        return name.lower() if fer2013 else name

    known = {key(name): label for name, label in zip(class_names, labels, strict=True)}
    folders = sorted(
        entry.name
        for entry in Path(args.data).iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )
    unknown = [name for name in folders if key(name) not in known]
    if unknown:
        raise DataFileError(
            f"{args.data}: the class folder(s) {unknown} are not classes of {args.model}, which "
            f"knows {list(class_names)}; rename them to the model's class names "
            f"({'any case' if fer2013 else 'exactly'}) or remove them"
        )
    height, _, channels = clf.image_shape_
    data = _photo_folder(args, size=height, gray=channels == 1)
    target = np.asarray([known[key(name)] for name in data.class_names])[data.target]
    absent = [name for name, label in known.items() if label not in set(target.tolist())]
    if absent:
        _progress(
            args,
            f"note: {args.data} has no photos of {', '.join(absent)}; their scores count as 0 "
            "in the macro averages",
        )
    return Path(args.data).resolve().name, data.images, target


def _predict(args: argparse.Namespace) -> int:
    """Report each file on its own: one that fails is reported and the others still run."""
    import numpy as np

    from .faces import VIDEO_SUFFIXES, annotate, predict_paths
    from .metrics import class_display_names
    from .persistence import load

    if args.whole_image and args.min_face is not None:
        args.parser.error("--min-face sets the face detector, which --whole-image does not run")
    clf = load(args.model)
    _progress(args, f"finding and classifying the faces in {len(args.images)} input(s)")
    rows = predict_paths(
        clf,
        args.images,
        min_face=DEFAULT_MIN_FACE if args.min_face is None else args.min_face,
        every=args.every,
        find_faces=not args.whole_image,
    )
    reports = _reports(rows)
    sources = list(dict.fromkeys(row["source"] for row in rows))
    if args.annotate is not None:
        out = Path(args.annotate)
        out.parent.mkdir(parents=True, exist_ok=True)
        numbers = {source: number for number, source in enumerate(sources, start=1)}
        for report in reports:
            if "faces" in report and "frame" not in report:  # a photo read
                number = numbers[report["image"]]
                target = out if len(sources) == 1 else out.with_stem(f"{out.stem}_{number}")
                report["annotated"] = str(annotate(report["image"], report["faces"], target))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    output = open(args.out, "w", newline="") if args.out else contextlib.nullcontext(sys.stdout)
    with output as stream:
        if args.csv:
            _write_csv(rows, class_display_names(np.asarray(clf.classes_), None), stream)
        elif args.json:
            stream.write(json.dumps(reports, indent=2) + "\n")
        else:
            for report in reports:
                if "faces" in report:
                    _print_faces(report, stream)
    if args.out:
        _progress(args, f"wrote {args.out}")
    failed = [report["error"] for report in reports if "error" in report]
    for error in failed:
        _fail(error, EXIT_INVALID_FILE)
    if failed:
        videos = any(Path(source).suffix.lower() in VIDEO_SUFFIXES for source in sources)
        noun = "files" if videos else "images"
        message = f"{len(failed)} of {len(sources)} {noun} failed (see above)"
        return _fail(message, EXIT_INVALID_FILE)
    return 0


def _reports(rows: list[dict]) -> list[dict]:
    """The rows of ``predict_paths`` gathered into one report per photo or video frame (the
    ``--json`` layout): ``image``, ``frame`` and ``time_s`` (video frames), then ``faces`` or
    ``error``."""
    reports: dict[tuple, dict] = {}
    for row in rows:
        report = reports.get((row["source"], row["frame"]))
        if report is None:
            report = reports[row["source"], row["frame"]] = {"image": row["source"]}
            if row["frame"] is not None:
                report.update(frame=row["frame"], time_s=row["time_s"])
            if row["error"] is None:
                report["faces"] = []
            else:
                report["error"] = row["error"]
        if row["face"] is not None:
            face_keys = ("face", "box", "label", "probabilities")
            report["faces"].append({key: row[key] for key in face_keys})
    return list(reports.values())


def _write_csv(rows: list[dict], class_names: list[str], stream) -> None:
    """One CSV line per row of ``predict_paths``, with the box and probabilities spread out."""
    writer = csv.writer(stream, lineterminator="\n")
    probability_columns = [f"p_{name}" for name in class_names]
    columns = ["source", "frame", "time_s", "face", "x", "y", "w", "h", "label"]
    writer.writerow([*columns, *probability_columns, "error"])
    for row in rows:
        probabilities = row["probabilities"] or {}
        writer.writerow(
            [
                *(row[key] for key in ("source", "frame", "time_s", "face")),
                *(row["box"] or [None] * 4),
                row["label"],
                *(probabilities.get(name) for name in class_names),
                row["error"],
            ]
        )


def _print_faces(report: dict, stream) -> None:
    faces = report["faces"]
    where = report["image"]
    if "frame" in report:
        where += f" frame {report['frame']}"
        if report["time_s"] is not None:
            where += f" ({report['time_s']:.2f} s)"
    if not faces:
        print(f"{where}: no face found", file=stream)
    else:
        print(f"{where}: {len(faces)} face{'s' if len(faces) > 1 else ''}", file=stream)
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face["box"]
        ranked = sorted(face["probabilities"].items(), key=lambda item: -item[1])
        others = ", ".join(f"{label} {p:.2f}" for label, p in ranked[1:])
        print(
            f"  face {number} at x={x} y={y} w={w} h={h}: {face['label']} {ranked[0][1]:.2f}"
            f" ({others})",
            file=stream,
        )
    if "annotated" in report:
        print(f"  annotated image: {report['annotated']}", file=stream)


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    ferplus_labels = args.ferplus_labels
    if ferplus_labels is None:
        # FER+ runs need the votes; on FER2013 the default votes pair with the default images
        # alone (another file's rows are not FER+'s).
        default = skfer_home() / DATA_FILES["ferplus"]
        default_data = skfer_home() / DATA_FILES["fer2013"]
        if args.dataset == "ferplus" or (
            default.is_file() and Path(args.data).resolve() == default_data.resolve()
        ):
            ferplus_labels = str(default)
    if ferplus_labels is not None and not Path(ferplus_labels).exists():
        args.parser.error(f"--ferplus-labels {ferplus_labels}: no such file")
    if args.dataset == "ferplus" and args.test is not None and args.test_ferplus_labels is None:
        args.parser.error(
            "--test with --dataset ferplus is scored on FER+ labels: add "
            "--test-ferplus-labels VOTES.csv (the test file's FER+ votes, rows aligned)"
        )
    if args.test_ferplus_labels is not None and (args.test is None or args.dataset != "ferplus"):
        args.parser.error("--test-ferplus-labels goes with --test and --dataset ferplus")
    reproduce(
        args.preset,
        args.data,
        args.out,
        test=args.test,
        test_ferplus_csv=args.test_ferplus_labels,
        weights_dir=args.weights_dir,
        random_state=args.seed,
        smoke=args.smoke,
        verbose=0 if args.quiet else 1,
        dataset=args.dataset,
        ferplus_csv=ferplus_labels,
        stacker=args.stacker,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
