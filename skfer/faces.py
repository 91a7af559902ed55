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
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataFileError
from .metrics import _class_names

__all__ = ["FaceBox", "annotate", "crop_faces", "detect_faces", "load_image", "predict_faces"]

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
    if (
        isinstance(min_size, bool)
        or not isinstance(min_size, numbers.Integral)
        or min_size < _PNET_WINDOW
    ):
        raise ValueError(
            f"min_size must be an integer of at least {_PNET_WINDOW} pixels, the smallest "
            f"face the detector sees. Received: min_size={min_size!r}"
        )
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
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive integer. Received: size={size!r}")
    if not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0. Received: margin={margin!r}")
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


def predict_faces(
    classifier,
    image,
    *,
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
    shape = getattr(classifier, "image_shape_", None)
    classes = getattr(classifier, "classes_", None)
    if shape is None or classes is None:
        raise ValueError(
            "predict_faces needs a fitted classifier with image_shape_ and classes_ (such as "
            "skfer.TransferCNNClassifier); fit it first. "
            f"Received: {type(classifier).__name__}"
        )
    height, width, channels = shape
    if height != width:
        raise ValueError(
            "predict_faces crops square faces; use a classifier trained on square images. "
            f"Received: image_shape_={tuple(shape)}"
        )
    classes = np.asarray(classes)
    if isinstance(class_names, Mapping):
        missing = [label for label in classes.tolist() if label not in class_names]
        if missing:
            raise ValueError(
                "class_names must name every class of the classifier; add the missing "
                f"labels. Received: no name for {missing}"
            )
        names = [str(class_names[label]) for label in classes.tolist()]
    else:
        names = _class_names(classes, class_names)
    image = load_image(image)  # decoded once for detection and cropping
    boxes = detect_faces(image)
    if not boxes:
        return []
    crops = crop_faces(image, boxes, size=int(height), margin=margin, grayscale=channels == 1)
    probabilities = classifier.predict_proba(crops.reshape(len(boxes), height, width, channels))
    return [
        {
            "box": [box.x, box.y, box.width, box.height],
            "label": names[int(np.argmax(row))],
            "probabilities": {name: float(p) for name, p in zip(names, row, strict=True)},
        }
        for box, row in zip(boxes, probabilities, strict=True)
    ]


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
