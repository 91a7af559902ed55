"""Time ``skfer.datasets.load_fer2013`` on the real FER2013 CSV against a naive per-row parse.

Run from the project root::

    python benchmarks/bench_load_fer2013.py [--path ../shared/data/fer2013/fer2013.csv.gz]

Prints the machine, the date, the cold (first call in this process) and warm (median of
``--repeats`` calls) load times, the naive baseline measured in the same run, their ratio,
and the peak resident memory.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = PROJECT_ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def naive_load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The usual FER2013 loop: one ``np.fromstring`` per CSV row."""
    with open(path, "rb") as file:
        compressed = file.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    images, targets, usages = [], [], []
    with opener(path, "rt") as file:
        next(file)
        for line in file:
            emotion, pixels, usage = line.rstrip("\r\n").split(",")
            images.append(np.fromstring(pixels, dtype=np.uint8, sep=" "))
            targets.append(int(emotion))
            usages.append(usage)
    return np.stack(images).reshape(-1, 48, 48), np.array(targets), np.array(usages)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="FER2013 CSV(.gz)")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls (median reported)")
    args = parser.parse_args(argv)

    rss_start = peak_rss_mib()
    from skfer.datasets import load_fer2013

    rss_import = peak_rss_mib()
    print(f"date:    {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"file:    {args.path} ({args.path.stat().st_size / 2**20:.1f} MiB)")

    cold, data = timed(load_fer2013, args.path)
    warm = statistics.median(timed(load_fer2013, args.path)[0] for _ in range(args.repeats))
    rss_loader = peak_rss_mib()
    rows = sum(
        data[name].target.size for name in ("train", "public_test", "private_test") if name in data
    )
    print(f"rows:    {rows} ({', '.join(data.splits)})")
    print(f"load_fer2013: cold {cold:.3f} s, warm median of {args.repeats} {warm:.3f} s")

    naive, (images, targets, usages) = timed(naive_load, args.path)
    for name, attribute in (("Training", "train"), ("PublicTest", "public_test")):
        if attribute in data:
            assert np.array_equal(data[attribute].images, images[usages == name]), name
            assert np.array_equal(data[attribute].target, targets[usages == name]), name
    print(f"naive per-row np.fromstring loop: {naive:.3f} s (same arrays)")
    print(f"speed-up: {naive / cold:.1f}x cold, {naive / warm:.1f}x warm")
    print(
        f"peak RSS: {rss_start:.0f} MiB at start, {rss_import:.0f} MiB after import, "
        f"{rss_loader:.0f} MiB after load_fer2013, {peak_rss_mib():.0f} MiB after naive loop"
    )


if __name__ == "__main__":
    main()
