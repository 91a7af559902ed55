"""Throughput of ``skfer.faces.predict_paths``: faces classified in batches, or one by one.

Run from the project root (needs the ``dev`` extra; nothing is downloaded)::

    python benchmarks/bench_predict.py [--photos 200] [--frames 100] [--input-size 96]

Writes, in a temporary folder, ``--photos`` photos (scikit-image's astronaut and matplotlib's
Grace Hopper, alone or side by side, 256 to 512 pixels high, as JPEG) and an MPEG-4 video of
``--frames`` frames (the astronaut panning across a 320x240 window, 25 frames/s). Then, in
the same process, it runs ``predict_paths`` on the folder and on the video (every frame) with
``batch_size=256``, the default, and with ``batch_size=1``: one ``predict_proba`` call per
face. The classifier is MobileNet 0.25 at ``--input-size`` pixels with random weights, fitted
for one epoch on random 48x48 images (its speed does not depend on what it learned).

Prints images/s and frames/s of each, the ratio batched / one by one, and the calls to and
seconds in ``predict_proba``. Face detection (MTCNN, image by image either way) is most of
the time; the ratio of the ``predict_proba`` seconds is the gain of batching itself.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

BATCHED, ONE_BY_ONE = 256, 1


def write_photos(folder: Path, count: int, rng: np.random.Generator) -> None:
    """``count`` JPEG photos with one or two faces, of random heights in 256..512 pixels."""
    import tensorflow as tf
    from matplotlib import cbook
    from skimage import data, io

    astronaut = data.astronaut()
    grace = io.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[:512]
    scenes = [astronaut, grace, np.hstack([astronaut, grace])]
    for index in range(count):
        scene = scenes[index % len(scenes)]
        height = int(rng.integers(256, 513))
        width = round(scene.shape[1] * height / scene.shape[0])
        photo = tf.image.resize(scene, (height, width), antialias=True)
        photo = tf.cast(tf.clip_by_value(tf.round(photo), 0, 255), tf.uint8)
        tf.io.write_file(str(folder / f"photo_{index:04d}.jpg"), tf.io.encode_jpeg(photo))


def write_video(path: Path, frames: int) -> None:
    """An MPEG-4 video, 320x240 at 25 frames/s, of a window panning across the astronaut."""
    import av
    from skimage import data

    astronaut = data.astronaut()[::2, ::2]  # 256x256: the face is about 45 pixels wide
    canvas = np.zeros((240, 320 + 256, 3), np.uint8)
    canvas[:, 160 : 160 + 256] = astronaut[:240]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.bit_rate = 2_000_000
        for index in range(frames):
            left = round(index * 256 / max(frames - 1, 1))
            frame = np.ascontiguousarray(canvas[:, left : left + 320])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def fitted_classifier(input_size: int):
    """MobileNet 0.25 with random weights, fitted one epoch on random 48x48 gray images."""
    from skfer import TransferCNNClassifier

    X = np.random.default_rng(0).integers(0, 256, (70, 48, 48), dtype=np.uint8)
    classifier = TransferCNNClassifier(
        "mobilenet",
        weights=None,
        input_size=input_size,
        head=(64,),
        short_epochs=1,
        long_epochs=0,
        validation_fraction=None,
        verbose=0,
        random_state=0,
    )
    return classifier.fit(X, np.arange(len(X)) % 7)


def timed_run(classifier, paths, batch_size: int) -> dict:
    """Seconds of one ``predict_paths`` run, its rows, and its ``predict_proba`` calls and time."""
    from skfer.faces import predict_paths

    calls = []
    predict_proba = classifier.predict_proba

    def timed_predict_proba(X):
        start = time.perf_counter()
        probabilities = predict_proba(X)
        calls.append(time.perf_counter() - start)
        return probabilities

    classifier.predict_proba = timed_predict_proba
    try:
        start = time.perf_counter()
        rows = predict_paths(classifier, paths, every=1, batch_size=batch_size)
        seconds = time.perf_counter() - start
    finally:
        del classifier.predict_proba
    return {"seconds": seconds, "rows": rows, "calls": len(calls), "proba_s": sum(calls)}


def report(name: str, unit: str, count: int, batched: dict, one_by_one: dict) -> None:
    faces = sum(row["face"] is not None for row in batched["rows"])
    print(f"\n{name}: {count} {unit}, {faces} faces")
    for label, run in (("batched", batched), ("one by one", one_by_one)):
        rate = count / run["seconds"]
        print(
            f"  {label:>10}: {run['seconds']:6.1f} s, {rate:6.2f} {unit}/s; predict_proba: "
            f"{run['calls']} call{'s' * (run['calls'] != 1)}, {run['proba_s']:.2f} s"
        )
    print(
        f"  ratio batched / one by one: {one_by_one['seconds'] / batched['seconds']:.2f}x "
        f"{unit}/s; time in predict_proba {one_by_one['proba_s'] / batched['proba_s']:.1f}x "
        "shorter"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="photos in the folder")
    parser.add_argument("--frames", type=int, default=100, help="frames in the video")
    parser.add_argument("--input-size", type=int, default=96, help="MobileNet input, pixels")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus")
    print(f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    with tempfile.TemporaryDirectory() as tmp:
        folder, video = Path(tmp) / "photos", Path(tmp) / "clip.mp4"
        folder.mkdir()
        write_photos(folder, args.photos, np.random.default_rng(0))
        write_video(video, args.frames)
        classifier = fitted_classifier(args.input_size)
        print(f"model: MobileNet 0.25 at {args.input_size} px, random weights, 48x48 gray crops")
        for batch_size in (BATCHED, ONE_BY_ONE):  # warm up: detector, model graph, decoder
            timed_run(classifier, sorted(folder.iterdir())[:3], batch_size)
        runs = {
            (inputs, batch_size): timed_run(classifier, [path], batch_size)
            for inputs, path in (("photos", folder), ("video", video))
            for batch_size in (BATCHED, ONE_BY_ONE)
        }
    report("photos", "images", args.photos, runs["photos", BATCHED], runs["photos", ONE_BY_ONE])
    report("video", "frames", args.frames, runs["video", BATCHED], runs["video", ONE_BY_ONE])


if __name__ == "__main__":
    main()
