"""Faces in arbitrary photos: detect, crop to the classifier's input, predict, draw.

The detector is MTCNN from the ``mtcnn`` package (``pip install 'skfer[faces]'``): three small
TensorFlow networks whose weights ship inside its wheel, so nothing is downloaded at run time
and the detector adds only ``mtcnn`` and ``lz4`` (about 3 MB; TensorFlow is already required).
It was chosen by ``benchmarks/bench_face_detectors.py`` on real photos shipped in packages
(astronaut, Grace Hopper, both side by side, the three-quarter, half-hidden face of ``camera``,
and ``coffee``, ``chelsea`` (a cat) and ``rocket`` with no face). On a 2-core VM shared with a
training run (load average about 5), 2026-11-26, MTCNN got all 7 images right; OpenCV's Haar
cascades (``opencv-python-headless``, a 160 MB install) got 6 of 7, missing the camera
operator's face. Their times per image overlapped under that load: 65-440 ms for the
cascades, 110-320 ms for MTCNN as wrapped here. OpenCV's YuNet was not a candidate: no wheel
ships its ONNX file. :func:`annotate` draws with matplotlib, outside pyplot (no GUI backend).

mtcnn 1.0 can return no face at all for a ``min_face_size`` above 20 (its image pyramid then
shrinks photos below its 12-pixel window; 30 on a 512x512 photo does), so
:func:`detect_faces` shrinks the photo by ``20 / min_size`` instead, which searches the same
face sizes.

:func:`predict_paths` reads photos, folders of photos and videos. Faces are detected photo by
photo and frame by frame, and their crops are classified together, ``batch_size`` crops per
``predict_proba`` call whichever image they come from. Videos are decoded in the process by
PyAV (the ``av`` package, in the ``faces`` extra), whose wheels bundle FFmpeg's libraries.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataFileError
from .metrics import class_display_names

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FaceBox",
    "annotate",
    "crop_faces",
    "detect_faces",
    "load_image",
    "predict_faces",
    "predict_paths",
]

#: File name endings of the photos :func:`predict_paths` reads in folders (any case).
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: File name endings that :func:`predict_paths` reads as videos (any case).
VIDEO_SUFFIXES = (".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm", ".wmv")

_GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)  # tf.image.rgb_to_grayscale
_PNET_WINDOW = 12  # smallest face, in pixels, MTCNN's first network sees
_MTCNN_SAFE_MIN_FACE = 20  # largest min_face_size mtcnn 1.0 handles (see the module docstring)
_SIGNATURES = {  # first bytes of image files
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_READABLE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")
_ROW_KEYS = ("source", "frame", "time_s", "face", "box", "label", "probabilities", "error")


@dataclass(frozen=True)
class FaceBox:
    """A face found in an image, in pixels: top-left corner, size and detector confidence."""

    x: int
    y: int
    width: int
    height: int
    score: float | None = None


def load_image(image: str | os.PathLike | np.ndarray) -> np.ndarray:
    """Return an image as a new ``uint8`` RGB array of shape ``(H, W, 3)``.

    Parameters
    ----------
    image : str, path-like or array-like
        A PNG, JPEG, GIF or BMP file, or an array ``(H, W)`` or ``(H, W, 1)`` (gray, replicated
        to RGB), ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA, alpha dropped). Integers must lie
        in 0..255, floats in [0, 1] (scaled by 255).

    Raises
    ------
    FileNotFoundError
        When the path does not exist (``IsADirectoryError`` when it is a folder).
    DataFileError
        When the file is empty, unreadable, not an image, of another format (WebP, TIFF,
        HEIF, ...) or corrupt; a ``ValueError``.
    ValueError
        On an array of a wrong shape, or values out of range.
    """
    if isinstance(image, (str, os.PathLike)):
        return _read_image_file(Path(image))
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[:, :, :3]
    elif array.ndim != 2:
        raise ValueError(
            "image must be an (H, W) gray, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA array, "
            f"or a path to an image file. Received: shape={array.shape}"
        )
    if array.size == 0:
        raise ValueError(
            f"image is empty; pass an image with pixels. Received: shape={array.shape}"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                "a float image must hold finite values in [0, 1]; replace NaN and infinite "
                f"pixels. Received: {np.count_nonzero(~np.isfinite(array))} non-finite values"
            )
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                "a float image must hold finite values in [0, 1]; divide 0..255 floats by 255 "
                f"or cast them to uint8. Received: dtype={array.dtype}, "
                f"range=[{array.min()}, {array.max()}]"
            )
        array = np.round(array * 255)
    elif np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(
                "an integer image must hold values in 0..255; rescale it (e.g. 16-bit: // 257). "
                f"Received: dtype={array.dtype}, range=[{array.min()}, {array.max()}]"
            )
    else:
        raise ValueError(f"image must hold real numbers. Received: dtype={array.dtype}")
    array = array.astype(np.uint8)
    if array.ndim == 2 or array.shape[2] == 1:
        return np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2)
    return array.copy()


def _read_image_file(path: Path) -> np.ndarray:
    """Decode a PNG, JPEG, GIF or BMP file into ``uint8`` RGB."""
    import tensorflow as tf

    if path.is_dir():
        raise IsADirectoryError(
            f"'{path}' is a folder, not an image file; pass the image files in it "
            f"(e.g. {path / '*.jpg'}). Received: {str(path)!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"No image file at '{path}'; check the path (relative paths start at "
            f"{Path.cwd()}). Received: {str(path)!r}"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataFileError(
            f"'{path}' cannot be read ({error.strerror or error}); check its permissions. "
            f"Received: {str(path)!r}"
        ) from error
    kind = _image_format(data)
    if kind not in _READABLE_FORMATS:
        if not data:
            what = "empty (0 bytes)"
        elif kind:
            what = f"a {kind} image, a format skfer cannot read"
        else:
            what = f"not an image file (its first bytes {data[:8]!r} are no image format's)"
        raise DataFileError(
            f"'{path}' is {what}; pass a PNG, JPEG, GIF or BMP file (convert other formats), "
            f"or the pixels as an array. Received: {str(path)!r}"
        )
    try:
        decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        raise DataFileError(
            f"'{path}' is a truncated or corrupt {kind} file that cannot be decoded; export or "
            f"copy it again. Received: {str(path)!r}, {len(data)} bytes"
        ) from error
    return decoded.numpy()


def _image_format(data: bytes) -> str | None:
    """The image format whose signature ``data`` starts with, or None."""
    if data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return "WebP"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


@functools.cache
def _detector():
    """The MTCNN detector, built once per process."""
    try:
        from mtcnn import MTCNN
    except ImportError as error:
        raise ImportError(
            "skfer.faces needs the mtcnn package to find faces; install it with "
            f"pip install 'skfer[faces]'. Received: {error}"
        ) from error
    return MTCNN(device="CPU:0")


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, C)`` image to ``shape`` (antialiased bilinear), as ``uint8``."""
    import tensorflow as tf

    resized = tf.image.resize(image.astype(np.float32), shape, antialias=True).numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def detect_faces(image, *, min_size: int = 30) -> list[FaceBox]:
    """Find the faces in a photo.

    Parameters
    ----------
    image : str, path-like or array-like
        Anything :func:`load_image` accepts.
    min_size : int, default=30
        Smallest face searched for, in pixels (at least 12).

    Returns
    -------
    list of FaceBox
        Boxes within the image with the detector's confidence as ``score``, sorted left to
        right; empty when there is no face.
    """
    _check_face_size(min_size, "min_size")
    image = load_image(image)
    height, width = image.shape[:2]
    if min(height, width) < min_size:
        return []
    scale = min(1.0, _MTCNN_SAFE_MIN_FACE / min_size)
    small = image
    if scale < 1:
        small = _resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    faces = _detector().detect_faces(small, min_face_size=min(int(min_size), _MTCNN_SAFE_MIN_FACE))
    x_scale, y_scale = width / small.shape[1], height / small.shape[0]
    boxes = []
    for face in faces:
        x, y, w, h = face["box"]
        x0, y0 = max(0, round(x * x_scale)), max(0, round(y * y_scale))
        x1, y1 = min(width, round((x + w) * x_scale)), min(height, round((y + h) * y_scale))
        if x1 > x0 and y1 > y0:
            boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0, float(face["confidence"])))
    return sorted(boxes, key=lambda box: (box.x, box.y))


def _check_face_size(value, name: str) -> None:
    """Raise ValueError unless ``value`` is a face size, in pixels, that the detector sees."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < _PNET_WINDOW:
        raise ValueError(
            f"{name} must be an integer of at least {_PNET_WINDOW} pixels, the smallest "
            f"face the detector sees. Received: {name}={value!r}"
        )


def _check_positive(value, name: str) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def _check_margin(margin) -> None:
    """Raise ValueError unless ``margin`` is a number >= 0."""
    if not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0. Received: margin={margin!r}")


def _as_box(box) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of a FaceBox or a 4-sequence."""
    values = (box.x, box.y, box.width, box.height) if isinstance(box, FaceBox) else box
    try:
        x, y, w, h = (int(value) for value in values)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "each box must be a FaceBox or an (x, y, width, height) sequence of integers. "
            f"Received: {box!r}"
        ) from error
    if w <= 0 or h <= 0:
        raise ValueError(f"a box must have a positive width and height. Received: {box!r}")
    return x, y, w, h


def crop_faces(
    image,
    boxes: Sequence[FaceBox] | Sequence[Sequence[int]],
    *,
    size: int = 48,
    margin: float = 0.2,
    grayscale: bool = True,
) -> np.ndarray:
    """Cut each face out of a photo as a classifier input.

    Each box is made square about its centre (on its longer side), grown by ``margin`` times
    that side on every side, clipped to the image, and resized to ``size`` x ``size``.

    Parameters
    ----------
    image : str, path-like or array-like
        Anything :func:`load_image` accepts.
    boxes : sequence of FaceBox or of (x, y, width, height)
        Faces, e.g. from :func:`detect_faces`.
    size : int, default=48
        Side of each crop, in pixels.
    margin : float, default=0.2
        Context added around each box, as a fraction of its side.
    grayscale : bool, default=True
        Gray crops (luma weights of ``tf.image.rgb_to_grayscale``) rather than RGB.

    Returns
    -------
    ndarray of uint8
        ``(n, size, size)`` gray or ``(n, size, size, 3)`` RGB crops, in the order of ``boxes``.
    """
    _check_positive(size, "size")
    _check_margin(margin)
    image = load_image(image)
    height, width = image.shape[:2]
    crops = []
    for box in boxes:
        x, y, w, h = _as_box(box)
        side = max(w, h) * (1 + 2 * margin)
        centre_x, centre_y = x + w / 2, y + h / 2
        x0, x1 = max(0, round(centre_x - side / 2)), min(width, round(centre_x + side / 2))
        y0, y1 = max(0, round(centre_y - side / 2)), min(height, round(centre_y + side / 2))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(
                f"box lies outside the {width}x{height} image; pass boxes found in this "
                f"image. Received: {box!r}"
            )
        crop = image[y0:y1, x0:x1]
        if grayscale:
            crop = (crop @ _GRAY_WEIGHTS)[:, :, np.newaxis]
        crops.append(_resize(crop, (size, size)))
    shape = (len(crops), size, size) if grayscale else (len(crops), size, size, 3)
    return np.stack(crops).reshape(shape) if crops else np.empty(shape, dtype=np.uint8)


def _classifier_input(
    classifier, class_names: Mapping | Sequence[str] | None, caller: str
) -> tuple[tuple[int, int, int], list[str]]:
    """The square input shape ``(side, side, channels)`` of a fitted classifier, and the
    name of each of its classes."""
    shape = getattr(classifier, "image_shape_", None)
    classes = getattr(classifier, "classes_", None)
    if shape is None or classes is None:
        raise ValueError(
            f"{caller} needs a fitted classifier with image_shape_ and classes_ (such as "
            "skfer.TransferCNNClassifier); fit it first. "
            f"Received: {type(classifier).__name__}"
        )
    height, width, channels = (int(value) for value in shape)
    if height != width:
        raise ValueError(
            f"{caller} crops square faces; use a classifier trained on square images. "
            f"Received: image_shape_={tuple(shape)}"
        )
    classes = np.asarray(classes)
    if not isinstance(class_names, Mapping):
        return (height, width, channels), class_display_names(classes, class_names)
    missing = [label for label in classes.tolist() if label not in class_names]
    if missing:
        raise ValueError(
            "class_names must name every class of the classifier; add the missing "
            f"labels. Received: no name for {missing}"
        )
    return (height, width, channels), [str(class_names[label]) for label in classes.tolist()]


def _scored(names: Sequence[str], probabilities: np.ndarray) -> dict:
    """``{"label": the most probable name, "probabilities": {name: p}}`` of one crop."""
    return {
        "label": names[int(np.argmax(probabilities))],
        "probabilities": {name: float(p) for name, p in zip(names, probabilities, strict=True)},
    }


def predict_faces(
    classifier,
    image,
    *,
    min_face: int = 30,
    margin: float = 0.2,
    class_names: Mapping | Sequence[str] | None = None,
) -> list[dict]:
    """Detect the faces in a photo and classify the expression of each.

    Parameters
    ----------
    classifier : fitted estimator
        A fitted skfer classifier: its ``image_shape_`` ``(H, W, C)`` sets the crop size and
        gray (``C == 1``) or RGB input, and ``predict_proba`` scores the crops.
    image : str, path-like or array-like
        Anything :func:`load_image` accepts.
    min_face : int, default=30
        Smallest face searched for, in pixels (at least 12).
    margin : float, default=0.2
        Passed to :func:`crop_faces`.
    class_names : mapping or sequence of str, optional
        Name of each label: ``{label: name}``, or names in the order of ``classifier.classes_``.
        Default: the FER2013 names for integer labels 0..6, else ``str(label)``.

    Returns
    -------
    list of dict
        One per face, left to right (empty when there is none): ``{"box": [x, y, w, h],
        "label": name of the most probable class, "probabilities": {name: probability}}``.
    """
    shape, names = _classifier_input(classifier, class_names, "predict_faces")
    image = load_image(image)  # decoded once for detection and cropping
    boxes = detect_faces(image, min_size=min_face)
    if not boxes:
        return []
    crops = crop_faces(image, boxes, size=shape[0], margin=margin, grayscale=shape[2] == 1)
    probabilities = classifier.predict_proba(crops.reshape(len(boxes), *shape))
    return [
        {"box": [box.x, box.y, box.width, box.height], **_scored(names, row)}
        for box, row in zip(boxes, probabilities, strict=True)
    ]


def predict_paths(
    classifier,
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    min_face: int = 30,
    every: int = 10,
    batch_size: int = 256,
    margin: float = 0.2,
    class_names: Mapping | Sequence[str] | None = None,
    find_faces: bool = True,
) -> list[dict]:
    """Classify the expression of every face in photos, folders of photos and videos.

    Faces are detected photo by photo and frame by frame, cropped, and classified
    ``batch_size`` crops per ``predict_proba`` call whichever files they come from. A file
    that cannot be read is reported in its own row; the other files are still predicted.

    Parameters
    ----------
    classifier : fitted estimator
        As for :func:`predict_faces`.
    paths : str, path-like or iterable of them
        Photos (PNG, JPEG, GIF or BMP), folders (their files ending in one of
        :data:`IMAGE_SUFFIXES`, searched recursively, in sorted order) and videos (files ending
        in one of :data:`VIDEO_SUFFIXES`). A file named twice is read once.
    min_face : int, default=30
        Smallest face searched for, in pixels (at least 12).
    every : int, default=10
        Read every ``every``-th frame of a video: frames 0, ``every``, ``2 * every``, ...
    batch_size : int, default=256
        Most face crops per ``predict_proba`` call.
    margin : float, default=0.2
        Passed to :func:`crop_faces`.
    class_names : mapping or sequence of str, optional
        As for :func:`predict_faces`.
    find_faces : bool, default=True
        Detect the faces (MTCNN). False takes each photo and frame as one face that is
        already cropped (FER2013's 48 px images, say), resized whole to the classifier's input
        with its box the whole image: no detector runs, so ``mtcnn`` is not needed.

    Returns
    -------
    list of dict
        One row per face, in the order of ``paths``, each with all of these keys:
        ``source`` (the file's path, str), ``frame`` (index of the video frame, from 0; None
        for a photo), ``time_s`` (the frame's time stamp in seconds; None for a photo),
        ``face`` (index of the face in its photo or frame, from 0, left to right), ``box``
        (``[x, y, width, height]``), ``label`` (name of the most probable class),
        ``probabilities`` (``{name: probability}``) and ``error`` (None). A photo or frame
        without a face has one row whose ``face``, ``box``, ``label`` and ``probabilities``
        are None. A file that cannot be read, or a folder without a photo, has one row whose
        ``error`` says why (after the rows of the frames read before a video broke off).

    Raises
    ------
    ValueError
        On an unfitted classifier or a bad option value.
    ImportError
        When ``paths`` name a video and PyAV (the ``av`` package) is not installed.
    """
    shape, names = _classifier_input(classifier, class_names, "predict_paths")
    _check_face_size(min_face, "min_face")
    _check_positive(every, "every")
    _check_positive(batch_size, "batch_size")
    _check_margin(margin)
    if not isinstance(find_faces, (bool, np.bool_)):
        raise ValueError(
            "find_faces must be True (detect the faces) or False (each image is one face). "
            f"Received: find_faces={find_faces!r}"
        )
    files = _files(paths)
    if any(path.suffix.lower() in VIDEO_SUFFIXES for path in files):
        _import_av()  # a missing package fails before the photos are read, not after
    rows, pending = [], []  # pending: (row, crop) of the faces not classified yet
    for base, boxes, crops in _detections(files, every, min_face, shape, margin, find_faces):
        if not boxes:
            rows.append({**dict.fromkeys(_ROW_KEYS), **base})
        for index, (box, crop) in enumerate(zip(boxes, crops, strict=True)):
            box_values = [box.x, box.y, box.width, box.height]
            rows.append({**dict.fromkeys(_ROW_KEYS), **base, "face": index, "box": box_values})
            pending.append((rows[-1], crop))
        while len(pending) >= batch_size:
            _classify(classifier, pending[:batch_size], shape, names)
            del pending[:batch_size]
    if pending:
        _classify(classifier, pending, shape, names)
    return rows


def _files(paths) -> list[Path]:
    """``paths`` with each folder replaced by its photos (recursively, sorted), each file once;
    a folder without a photo is kept, to be reported."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        photos = []
        if path.is_dir():
            photos = sorted(
                file
                for file in path.rglob("*")
                if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file()
            )
        files.extend(photos or [path])
    return list(dict.fromkeys(files))


def _detections(
    files: Sequence[Path],
    every: int,
    min_face: int,
    shape: tuple[int, int, int],
    margin: float,
    find_faces: bool,
) -> Iterator[tuple[dict, list[FaceBox], np.ndarray | tuple]]:
    """Per photo and video frame read: its ``source``, ``frame`` and ``time_s``, its faces
    (found, or the whole image) and their crops; per file that fails: its ``source`` and
    ``error``, and no face."""
    for path in files:
        try:
            for frame, time_s, image in _images(path, every):
                if find_faces:
                    boxes = detect_faces(image, min_size=min_face)
                else:
                    boxes, margin = [FaceBox(0, 0, image.shape[1], image.shape[0])], 0.0
                crops = crop_faces(
                    image, boxes, size=shape[0], margin=margin, grayscale=shape[2] == 1
                )
                yield {"source": str(path), "frame": frame, "time_s": time_s}, boxes, crops
        except (ValueError, OSError) as error:  # DataFileError is a ValueError
            yield {"source": str(path), "error": str(error)}, [], ()


def _images(path: Path, every: int) -> Iterator[tuple[int | None, float | None, np.ndarray]]:
    """``(frame, time_s, RGB image)``: a photo's (frame and time None), or a video's frames."""
    if path.is_dir():
        raise DataFileError(
            f"'{path}' is a folder without a photo (no file ending in {', '.join(IMAGE_SUFFIXES)}"
            f" in it or below it); pass photos or videos. Received: {str(path)!r}"
        )
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from _video_frames(path, every)
    else:
        yield None, None, load_image(path)


def _import_av():
    """The ``av`` module (PyAV), or an ImportError that says how to install it."""
    try:
        import av
    except ImportError as error:
        raise ImportError(
            "reading videos needs PyAV (the av package); install it with "
            f"pip install 'skfer[faces]'. Received: {error}"
        ) from error
    return av


def _video_frames(path: Path, every: int) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """``(frame index, time stamp in seconds, RGB image)`` of every ``every``-th frame."""
    av = _import_av()
    if not path.is_file():
        raise FileNotFoundError(
            f"No video file at '{path}'; check the path (relative paths start at "
            f"{Path.cwd()}). Received: {str(path)!r}"
        )
    index = -1  # of the last frame decoded
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataFileError(
                    f"'{path}' holds no video stream; pass a video file. Received: {str(path)!r}"
                )
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg decodes with several threads
            for index, frame in enumerate(container.decode(stream)):
                if index % every == 0:
                    yield index, frame.time, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
        raise DataFileError(
            f"'{path}' is not a video that FFmpeg can read, or is truncated or corrupt "
            f"({error}); export or copy it again. Received: {str(path)!r}"
        ) from error
    if index < 0:
        raise DataFileError(f"'{path}' holds no video frame. Received: {str(path)!r}")


def _classify(classifier, pending: list, shape: tuple[int, int, int], names: list[str]) -> None:
    """Set ``label`` and ``probabilities`` of the pending rows with one ``predict_proba`` call."""
    crops = np.stack([crop for _, crop in pending]).reshape(len(pending), *shape)
    for (row, _), probabilities in zip(pending, classifier.predict_proba(crops), strict=True):
        row.update(_scored(names, probabilities))


def annotate(image, results: Sequence[dict], path: str | os.PathLike) -> Path:
    """Draw each face's box and ``"label probability"`` on the photo and save it as a PNG.

    Parameters
    ----------
    image : str, path-like or array-like
        Anything :func:`load_image` accepts.
    results : sequence of dict
        Output of :func:`predict_faces` (each needs ``"box"``; ``"label"`` and
        ``"probabilities"`` add the caption).
    path : str or path-like
        PNG file to write, at the image's own size.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as error:
        raise ImportError(
            "annotate draws with matplotlib; install it with pip install 'skfer[faces]'. "
            f"Received: {error}"
        ) from error
    image = load_image(image)
    height, width = image.shape[:2]
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(image, interpolation="nearest")
    axes.set_axis_off()
    line = max(1.0, min(width, height) / 250)  # line width in points, thicker on big photos
    for index, result in enumerate(results):
        if not isinstance(result, Mapping) or "box" not in result:
            raise ValueError(
                "results must be the dicts predict_faces returns, each with a 'box'. "
                f"Received: results[{index}]={result!r}"
            )
        x, y, w, h = _as_box(result["box"])
        axes.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, color="lime", lw=line))
        if result.get("label") is None:
            continue
        caption = str(result["label"])
        probability = result.get("probabilities", {}).get(caption)
        if probability is not None:
            caption += f" {probability:.2f}"
        above = y >= 15 * line  # room for the caption above the box, else inside it
        axes.text(
            x,
            y - line if above else y + line,
            caption,
            fontsize=7 * line,
            va="bottom" if above else "top",
            bbox={"facecolor": "lime", "edgecolor": "none", "pad": 1},
        )
    path = Path(path)
    figure.savefig(path, format="png", dpi=dpi)
    return path
