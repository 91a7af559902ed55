"""Cached block maps in memory or on disk: peak memory and the speed of reading training batches.

    python benchmarks/bench_cache_storage.py [--rows 28709] [--batch-size 64] [--repeats 2]

Each measurement runs in a fresh process, so that its peak resident memory (``ru_maxrss``) is
its own. It stores ``--rows`` float16 maps of the face-trained MobileNet's block 12 at 224 px
(7x7x1024, 100 KB a row) and as many mirror-image maps, as the cpu preset's block-13 models
do for the FER2013 Training images, either in numpy arrays (``memory``, the cache before
:class:`skfer.disk_array.DiskArray`) or in two DiskArrays (``disk``), written 64 MB at a time
as :func:`skfer.cache.predict_in_chunks` writes them. Then it reads one epoch of training
batches from them through :class:`skfer.training.ShuffledBatches` (shuffled rows, each from
the maps or the mirror maps), as the block-13 training does. It prints, per storage, the
seconds to store, the batches per second read and the peak memory, and the disk-to-memory
ratios measured in the same run. The values are random: reading does not depend on them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MAP_SHAPE = (7, 7, 1024)


def measure(storage: str, rows: int, batch_size: int) -> dict:
    """Store and read the maps in this process; its figures."""
    import numpy as np

    from skfer.disk_array import DiskArray
    from skfer.training import ShuffledBatches

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    chunk = 640  # 64 MB of float16 maps
    arrays = []
    for _ in range(2):  # the maps and the mirror maps
        shape = (rows, *MAP_SHAPE)
        array = np.empty(shape, np.float16) if storage == "memory" else DiskArray(shape, "float16")
        for first in range(0, rows, chunk):
            block = rng.random((min(chunk, rows - first), *MAP_SHAPE), np.float32)
            if storage == "memory":
                array[first : first + len(block)] = block
            else:
                array.write(first, block)
        array.setflags(write=False)
        arrays.append(array)
    stored = time.perf_counter() - start
    batches = ShuffledBatches(
        arrays[0], np.zeros(rows, np.int64), batch_size, seed=0, mirrored=arrays[1]
    )
    start = time.perf_counter()
    checksum = 0.0
    for index in range(len(batches)):
        x, _ = batches[index]
        checksum += float(x[0, 0, 0, 0])
    read = time.perf_counter() - start
    return {
        "storage": storage,
        "store_s": round(stored, 2),
        "batches_per_s": round(len(batches) / read, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "checksum": checksum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=28709)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", choices=["memory", "disk"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.rows, args.batch_size)))
        return
    print(
        f"# {datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}: {args.rows} block-12 maps and their mirror maps, "
        f"float16 {'x'.join(map(str, MAP_SHAPE))}, batches of {args.batch_size}"
    )
    results: dict[str, list[dict]] = {"memory": [], "disk": []}
    for repeat in range(args.repeats):
        order = ["memory", "disk"] if repeat % 2 == 0 else ["disk", "memory"]
        for storage in order:
            command = [sys.executable, __file__, "--measure", storage]
            command += ["--rows", str(args.rows), "--batch-size", str(args.batch_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            results[storage].append(result)
            print(
                f"repeat {repeat + 1} {storage:6s}: stored in {result['store_s']:6.1f} s, "
                f"{result['batches_per_s']:6.1f} batches/s read, peak memory "
                f"{result['peak_rss_gib']:.2f} GiB"
            )
    for repeat, (memory, disk) in enumerate(zip(results["memory"], results["disk"], strict=True)):
        print(
            f"repeat {repeat + 1}: disk/memory read speed "
            f"{disk['batches_per_s'] / memory['batches_per_s']:.2f}x, store time "
            f"{disk['store_s'] / memory['store_s']:.2f}x, peak memory "
            f"{disk['peak_rss_gib']:.2f} / {memory['peak_rss_gib']:.2f} GiB"
        )


if __name__ == "__main__":
    main()
