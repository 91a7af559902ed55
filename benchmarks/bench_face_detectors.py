"""Compare face detectors for ``skfer.faces`` on real photos shipped inside installed packages.

Run from the project root (needs the ``dev`` extra; ``opencv-python-headless`` 4.x is optional)::

    python benchmarks/bench_face_detectors.py [--repeats 3]

Candidates: OpenCV's Haar cascades (``frontalface_default`` and ``frontalface_alt2``, both in
the ``opencv-python-headless`` 4.x wheel), and the ``mtcnn`` package (TensorFlow, weights in
its wheel), raw and as wrapped by ``skfer.faces.detect_faces`` (which shrinks the photo
instead of raising mtcnn's ``min_face_size``). OpenCV's YuNet is not measured: it needs an
ONNX file that no OpenCV wheel ships.

Images, none downloaded: ``skimage.data.astronaut`` and matplotlib's ``grace_hopper.jpg`` (one
frontal face each), the two side by side (two faces), ``skimage.data.camera`` (one face in
three-quarter view, half hidden by a camera: a hard case), and ``coffee``, ``chelsea`` (a cat)
and ``rocket`` (no face). An image counts as correct when the detector returns exactly the
expected number of boxes and every known face region holds the centre of one box.

Prints the machine, the date, then per detector and image the boxes found, correctness and
the median time per image over ``--repeats`` calls after one warm-up call, whose time is
reported as ``cold`` (the detector's construction is timed apart).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np

# (x0, y0, x1, y1) of each face, read off the photos by eye.
ASTRONAUT_FACE = (180, 60, 265, 170)
GRACE_HOPPER_FACE = (160, 130, 370, 330)
CAMERAMAN_FACE = (180, 100, 260, 200)


def benchmark_images() -> list[tuple[str, np.ndarray, list[tuple[int, int, int, int]]]]:
    """``(name, RGB uint8 image, known face regions)`` for every benchmark image."""
    from matplotlib import cbook
    from skimage import data, io

    astronaut = data.astronaut()
    grace = io.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[:512]
    x0, y0, x1, y1 = GRACE_HOPPER_FACE
    camera = np.repeat(data.camera()[..., np.newaxis], 3, axis=2)
    return [
        ("astronaut", astronaut, [ASTRONAUT_FACE]),
        ("grace_hopper", grace, [GRACE_HOPPER_FACE]),
        (
            "two_faces",
            np.hstack([astronaut, grace]),
            [ASTRONAUT_FACE, (x0 + 512, y0, x1 + 512, y1)],
        ),
        ("camera", camera, [CAMERAMAN_FACE]),
        ("coffee", data.coffee(), []),
        ("chelsea_cat", data.chelsea(), []),
        ("rocket", data.rocket(), []),
    ]


def haar_detector(cascade: str, min_size: int):
    import cv2

    classifier = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, cascade))

    def detect(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes = classifier.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)
        )
        return [tuple(int(v) for v in box) for box in boxes]

    return detect


def mtcnn_detector(min_size: int):
    from mtcnn import MTCNN

    model = MTCNN(device="CPU:0")

    def detect(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        # mtcnn 1.0.0 sizes its pyramid from min_face_size=20 only: a larger value sends
        # images smaller than PNet's 12 px through it and returns [] for every image. So keep
        # the default and drop small boxes afterwards.
        boxes = [tuple(int(v) for v in face["box"]) for face in model.detect_faces(image)]
        return [box for box in boxes if min(box[2:]) >= min_size]

    return detect


def skfer_detector(min_size: int):
    from skfer.faces import detect_faces

    def detect(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        boxes = detect_faces(image, min_size=min_size)
        return [(box.x, box.y, box.width, box.height) for box in boxes]

    return detect


def is_correct(boxes, regions) -> bool:
    """Exactly one box per known face region, each region holding the centre of a box."""
    centres = [(x + w / 2, y + h / 2) for x, y, w, h in boxes]
    covered = all(
        any(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in centres) for x0, y0, x1, y1 in regions
    )
    return len(boxes) == len(regions) and covered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per image")
    parser.add_argument("--min-size", type=int, default=30, help="smallest face side, pixels")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    print(f"cpus: {os.cpu_count()}  python: {platform.python_version()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    images = benchmark_images()

    candidates = {
        "haar_default": lambda: haar_detector("haarcascade_frontalface_default.xml", args.min_size),
        "haar_alt2": lambda: haar_detector("haarcascade_frontalface_alt2.xml", args.min_size),
        "mtcnn": lambda: mtcnn_detector(args.min_size),
        "skfer.faces.detect_faces": lambda: skfer_detector(args.min_size),
    }
    print("yunet: skipped (no OpenCV wheel ships its ONNX file; nothing is downloaded)")
    for name, build in candidates.items():
        try:
            start = time.perf_counter()
            detect = build()
            built = time.perf_counter() - start
        except ImportError as error:
            print(f"\n{name}: skipped ({error})")
            continue
        print(f"\n{name} (imports and construction {built * 1e3:.0f} ms)")
        print(f"  {'image':<13}{'shape':<15}{'correct':<9}{'cold ms':>9}{'ms/img':>9}  boxes")
        n_correct = 0
        for image_name, image, regions in images:
            start = time.perf_counter()
            boxes = detect(image)
            cold = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                detect(image)
                times.append(time.perf_counter() - start)
            correct = is_correct(boxes, regions)
            n_correct += correct
            shape = "x".join(map(str, image.shape))
            print(
                f"  {image_name:<13}{shape:<15}{'yes' if correct else 'NO':<9}"
                f"{cold * 1e3:>9.0f}{statistics.median(times) * 1e3:>9.1f}  {boxes}"
            )
        print(f"  correct on {n_correct}/{len(images)} images")


if __name__ == "__main__":
    main()
