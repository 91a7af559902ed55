"""What each way of giving Keras data keeps in memory after ``predict``: an array, a
``keras.utils.PyDataset`` (Keras' ``from_generator`` pipeline), a ``PyDataset`` with
``workers=2`` (Keras' threads), and skfer's pipeline (:func:`skfer.backend.keras_input`).

    python benchmarks/bench_pipeline_memory.py [--calls 6] [--megabytes 100]

Each path predicts ``--calls`` fresh float32 arrays of ``--megabytes`` with a one-layer model,
drops them and collects garbage, in a process of its own; prints the resident memory after
each call and its growth per call from the second call on (the first warms up). TensorFlow
keeps the generator of every ``from_generator`` pipeline for the life of the process: a path
whose generator refers to the array keeps the array too.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PATHS = {
    "array": "an array (Keras' array pipeline)",
    "pydataset": "a PyDataset (Keras' generator pipeline)",
    "threads": "a PyDataset with workers=2 (Keras' threads)",
    "skfer": "skfer's pipeline (keras_input)",
}


def resident_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def run_path(path: str, calls: int, megabytes: int) -> list[float]:
    """Resident MB after each of ``calls`` predictions of a fresh array through ``path``."""
    import keras
    import numpy as np

    from skfer.backend import OrderedBatches, predict_in_full_batches

    width = 1000
    rows = megabytes * 10**6 // (4 * width)
    inputs = keras.Input((width,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    after = []
    for call in range(calls):
        x = np.random.default_rng(call).normal(size=(rows, width)).astype(np.float32)
        if path == "array":
            model.predict(x, batch_size=500, verbose=0)
        elif path in ("pydataset", "threads"):
            batches = OrderedBatches(x, batch_size=500)
            batches.workers = 2 if path == "threads" else 1
            model.predict(batches, verbose=0)
            del batches
        else:
            predict_in_full_batches(model, x, 500)
        del x
        gc.collect()
        after.append(resident_mb())
    return after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6, help="at least 3")
    parser.add_argument("--megabytes", type=int, default=100, help="size of each array")
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)  # one child's path
    args = parser.parse_args()
    if args.path:
        print(" ".join(f"{mb:.0f}" for mb in run_path(args.path, args.calls, args.megabytes)))
        return
    print(f"{args.calls} predict calls of {args.megabytes} MB arrays, each path in a process")
    print("| path | resident MB after each call | growth per call after the second, MB |")
    print("|---|---|---|")
    for path, label in PATHS.items():
        command = [sys.executable, __file__, "--path", path, "--calls", str(args.calls)]
        command += ["--megabytes", str(args.megabytes)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        after = [float(mb) for mb in child.stdout.split()]
        growth = (after[-1] - after[1]) / (len(after) - 2)  # the first call warms up
        print(f"| {label} | {' / '.join(f'{mb:.0f}' for mb in after)} | {growth:.0f} |")


if __name__ == "__main__":
    main()
