"""Reproduce the study's results table on FER2013.

    python examples/reproduce_table.py --preset cpu --data ../shared/data/fer2013/fer2013.csv.gz

Writes results.md (the table), results.json (every number, timing and choice),
confusion_matrix.png and accuracy_curves.png into --out. Presets: quick (minutes), cpu (all of
Training, < 1 hour on 2 cores, weights from ../shared/weights), paper (the study's backbones at
224 px: a GPU and internet access to download the weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skfer.backbones import WeightsDownloadError
from skfer.reproduce import PRESETS, reproduce

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--quick", action="store_const", const="quick", dest="preset",
                        help="same as --preset quick")  # fmt: skip
    parser.add_argument(
        "--data",
        default=str(PROJECT_ROOT.parent / "shared/data/fer2013/fer2013.csv.gz"),
        help="FER2013 CSV (.csv or .csv.gz) or Kaggle image folder",
    )
    parser.add_argument("--test", help="extra CSV (e.g. PrivateTest rows) reported as its split")
    parser.add_argument("--out", default="runs/reproduce", help="output folder")
    parser.add_argument(
        "--weights-dir",
        default=str(PROJECT_ROOT.parent / "shared/weights"),
        help="folder with offline weight files (the layout of ../shared/weights)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    for name in ("data", "test"):
        value = getattr(args, name)
        if value is not None and not Path(value).exists():
            parser.error(f"--{name} {value}: no such file or folder")
    try:
        reproduce(
            args.preset,
            args.data,
            args.out,
            test=args.test,
            weights_dir=args.weights_dir,
            random_state=args.seed,
            verbose=0 if args.quiet else 1,
        )
    except WeightsDownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
