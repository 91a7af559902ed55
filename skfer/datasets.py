"""Load FER2013 from the Kaggle CSV (plain or gzip) or the Kaggle image-folder layout, and
a folder of your own labelled photos (:func:`load_image_folder`).

The CSV parser is vectorised with numpy: the file is decompressed in pieces on the main
thread while a worker thread parses whole lines of the previous pieces, so a full
FER2013 CSV loads in about the time it takes to decompress it. Every row is validated:
a row that the fast path cannot take is re-parsed in pure Python, which accepts it
(leading zeros, tabs, padded fields) or raises a
:class:`~skfer.errors.DataFileError` naming its CSV line.
Nothing is silently dropped or coerced.

The integrity report (duplicates, conflicting labels, blank images) lives in
:mod:`skfer.integrity`; its names stay importable from here. FER+'s labels are in
:mod:`skfer.ferplus`, which builds on this module.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.utils import Bunch

from .errors import DataFileError
from .integrity import (  # noqa: F401 (re-exported: they lived here before)
    IntegrityReport,
    Member,
    drop_test_duplicates,
    fer2013_integrity,
    has_copy_in,
    image_ids,
)
from .usage import SPLIT_ATTRIBUTES, check_splits, present_splits, received

FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)

_SIDE = 48
_N_PIXELS = _SIDE * _SIDE
_HEADER = ("emotion", "pixels", "Usage")
_SPLITS = tuple(SPLIT_ATTRIBUTES)
_GZIP_MAGIC = b"\x1f\x8b"
_PIECE_BYTES = 1 << 20  # bytes of a plain CSV handed to the parser at a time
_GZIP_BLOCK_BYTES = 1 << 18  # compressed bytes inflated at a time (about 1 MB of CSV)
_MAX_PENDING = 4  # parsed pieces that may wait in the queue (bounds memory)
_EMOTION_CODES = {str(code).encode(): code for code in range(len(FER2013_CLASSES))}
_USAGE_CODES = {name.encode(): code for code, name in enumerate(_SPLITS)}
_NEWLINE, _CR, _SPACE, _COMMA = ord("\n"), ord("\r"), ord(" "), ord(",")
_PIXEL_COLUMNS = np.arange(_N_PIXELS)
_FOLDER_SPLITS = {"train": "Training", "test": "PublicTest"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class _Layout(NamedTuple):
    """Where the three FER2013 columns sit in a CSV row."""

    n_columns: int
    emotion: int
    pixels: int
    usage: int
    source: str


def load_fer2013(path: str | os.PathLike, *, splits: Sequence[str] | None = None) -> Bunch:
    """Load FER2013 from a Kaggle CSV (``.csv`` or gzip) or a Kaggle image folder.

    Parameters
    ----------
    path : str or os.PathLike
        The Kaggle ``fer2013.csv`` (plain or gzip, detected by its magic bytes), or a
        folder laid out as ``<path>/{train,test}/<class>/*.png|jpg|jpeg``.
    splits : sequence of str, optional
        Splits to return, by Usage name (``"Training"``, ``"PublicTest"``,
        ``"PrivateTest"``) or attribute name (``"train"``, ...). Default: all present.

    Returns
    -------
    sklearn.utils.Bunch
        One attribute per split present (``train``, ``public_test``, ``private_test``),
        each a Bunch with ``images`` (uint8, ``(n, 48, 48)``), ``target`` (int64, class
        index into ``class_names``), ``rows`` (int64, 0-based CSV data row, or index in
        sorted file order for folders) and ``usage``; plus ``splits``, ``class_names``,
        ``source`` and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataFileError
        If the data are malformed (the message names the line or file), or a requested
        split is absent (a ``ValueError``).
    ValueError
        If a requested split name is unknown.
    """
    source = os.fspath(path)
    wanted = check_splits(splits)
    location = Path(source)
    if not location.exists():
        raise FileNotFoundError(
            f"FER2013 data not found at '{source}'. Pass the path of the Kaggle fer2013.csv "
            "(or .csv.gz) or of a folder with train/ and test/ image subfolders."
        )
    if location.is_dir():
        images, target, usage, rows = _read_image_folder(location)
    else:
        images, target, usage, rows = _read_csv(location)
    present = tuple(name for code, name in enumerate(_SPLITS) if np.any(usage == code))
    wanted = present_splits(wanted, present, source, splits)
    result = Bunch(class_names=FER2013_CLASSES, source=source)
    kept = tuple(name for name in _SPLITS if name in wanted)
    for name in kept:
        mask = usage == _SPLITS.index(name)
        result[SPLIT_ATTRIBUTES[name]] = Bunch(
            images=np.ascontiguousarray(images[mask]),
            target=target[mask].astype(np.int64),
            rows=rows[mask].astype(np.int64),
            usage=name,
        )
    result.splits = kept
    counts = ", ".join(f"{name} ({result[SPLIT_ATTRIBUTES[name]].target.size})" for name in kept)
    result.DESCR = (
        "FER2013 facial-expression recognition data: 48x48 grayscale face images labelled "
        f"with one of {len(FER2013_CLASSES)} emotions ({', '.join(FER2013_CLASSES)}), "
        f"loaded from '{source}'. Splits: {counts}."
    )
    return result


# ----------------------------------------------------------------------------- CSV


def _iter_pieces(path: Path) -> Iterator[bytes]:
    """Yield the (decompressed) bytes of ``path`` in pieces of up to about a megabyte."""
    with open(path, "rb") as file:
        if file.read(2) != _GZIP_MAGIC:
            file.seek(0)
            while piece := file.read(_PIECE_BYTES):
                yield piece
            return
        file.seek(0)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip; checks the CRC
        try:
            while block := file.read(_GZIP_BLOCK_BYTES):
                while block:
                    if inflater.eof:  # another gzip member follows
                        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    if piece := inflater.decompress(block):
                        yield piece
                    block = inflater.unused_data
        except zlib.error as error:
            raise DataFileError(
                f"'{path}' is not a valid gzip file ({error}). Re-download or re-compress it. "
                + received(path.name)
            ) from error
        if not inflater.eof:
            raise DataFileError(
                f"'{path}' is a truncated gzip file. Re-download or re-compress it. "
                + received(path.name)
            )


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse a FER2013 CSV into ``(images, target, usage code, rows)`` for all rows."""
    pieces = _iter_pieces(path)
    head = b""
    for piece in pieces:
        head += piece
        if b"\n" in head:
            break
    if not head.strip():
        raise DataFileError(
            f"'{path}' is empty; expected a CSV with the header 'emotion,pixels,Usage'. "
            f"Re-download the file. Received: {path.name!r}"
        )
    header, _, rest = head.partition(b"\n")
    layout = _parse_header(header, str(path))
    results = []
    with ThreadPoolExecutor(max_workers=1) as worker:
        queue: deque[Future] = deque()
        next_line = 2
        ready, tail = b"", rest

        def submit(chunk: bytes) -> None:
            nonlocal next_line
            queue.append(worker.submit(_parse_chunk, chunk, layout, next_line))
            next_line += chunk.count(b"\n")
            if len(queue) > _MAX_PENDING:
                results.append(queue.popleft().result())

        for piece in pieces:
            if ready and not piece.isspace():  # hold back blank lines that may end the file
                submit(ready)
                ready = b""
            cut = piece.rfind(b"\n") + 1
            if cut:
                ready, tail = b"".join((ready, tail, memoryview(piece)[:cut])), piece[cut:]
            else:
                tail += piece
        last = (ready + tail).rstrip()
        if last:
            submit(last + b"\n")
        results.extend(future.result() for future in queue)
    if not results:
        raise DataFileError(
            f"'{path}' has a header but no data rows; expected one row per image after "
            "line 1. " + received(header.decode("utf-8", "replace").strip())
        )
    images = np.concatenate([images for images, _, _ in results]).reshape(-1, _SIDE, _SIDE)
    target = np.concatenate([target for _, target, _ in results])
    usage = np.concatenate([usage for _, _, usage in results])
    return images, target, usage, np.arange(target.size, dtype=np.int64)


def _parse_header(header: bytes, source: str) -> _Layout:
    """Locate the ``emotion``, ``pixels`` and ``Usage`` columns (case-insensitive)."""
    text = header.decode("utf-8-sig", "replace").strip()
    names = [name.strip().strip('"').lower() for name in text.split(",")]
    missing = [column for column in _HEADER if column.lower() not in names]
    if missing:
        raise DataFileError(
            f"'{source}' line 1: the CSV header lacks column(s) {missing}; expected the "
            f"Kaggle FER2013 header '{','.join(_HEADER)}'. Fix the header line. " + received(text)
        )
    emotion, pixels, usage = (names.index(column.lower()) for column in _HEADER)
    return _Layout(len(names), emotion, pixels, usage, source)


def _parse_chunk(
    chunk: bytes, layout: _Layout, first_line: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse whole CSV lines (``chunk`` ends with a newline) into pixels, labels, usage.

    Every line is checked with vectorised numpy; a line that fails any fast check is
    re-parsed by :func:`_parse_row`, which either accepts it (leading zeros, tabs) or
    raises the error for it. ``first_line`` is the 1-based CSV line number of the first
    line.
    """
    data = np.frombuffer(chunk, dtype=np.uint8)
    digit = data - np.uint8(ord("0"))
    # Two leading pad slots let the 3-digit window below look back from position 0.
    padded_is_digit = np.zeros(data.size + 2, dtype=bool)
    is_digit = padded_is_digit[2:]
    np.less(digit, 10, out=is_digit)
    special = np.flatnonzero(~is_digit & (data != _SPACE))  # commas, newlines, letters...
    kinds = data[special]
    newlines = special[kinds == _NEWLINE]
    commas = np.append(special[kinds == _COMMA], data.size - 1)  # guard for short lines
    line_start = np.concatenate(([0], newlines[:-1] + 1))
    line_end = newlines - (data[newlines - 1] == _CR)
    comma_before = np.searchsorted(commas[:-1], line_start)
    split_ok = np.searchsorted(commas[:-1], newlines) - comma_before == layout.n_columns - 1
    last_comma = commas.size - 1

    def field(column: int) -> tuple[np.ndarray, np.ndarray]:
        left = (
            line_start
            if column == 0
            else commas[np.minimum(comma_before + column - 1, last_comma)] + 1
        )
        right = (
            line_end
            if column == layout.n_columns - 1
            else commas[np.minimum(comma_before + column, last_comma)]
        )
        return np.where(split_ok, left, line_start), np.where(split_ok, right, line_start)

    def codes(column: int, table: dict[bytes, int]) -> np.ndarray:
        left, right = field(column)
        found = [
            table.get(chunk[a:b], -1) for a, b in zip(left.tolist(), right.tolist(), strict=True)
        ]
        return np.array(found, dtype=np.int8)

    emotion = codes(layout.emotion, _EMOTION_CODES)
    usage = codes(layout.usage, _USAGE_CODES)
    pixel_start, pixel_end = field(layout.pixels)
    n_special = np.searchsorted(special, pixel_end) - np.searchsorted(special, pixel_start)
    # Blank out the digits outside the pixel fields, so that every number left is a pixel.
    outside_start = np.concatenate(([0], pixel_end))
    outside_size = np.concatenate((pixel_start, [data.size])) - outside_start
    offset = outside_start - np.cumsum(outside_size) + outside_size
    is_digit[np.arange(outside_size.sum()) + np.repeat(offset, outside_size)] = False

    token_end = np.flatnonzero(is_digit[:-1] > is_digit[1:])  # last digit of each number
    first_token = np.searchsorted(token_end, pixel_start)
    n_tokens = np.searchsorted(token_end, pixel_end) - first_token
    bad = ~split_ok | (n_special > 0) | (n_tokens != _N_PIXELS) | (emotion < 0) | (usage < 0)
    # Numbers of 4+ digits do not fit the 3-digit window: send their lines to _parse_row.
    pairs = is_digit[:-1] & is_digit[1:]
    bad[np.searchsorted(newlines, np.flatnonzero(pairs[:-2] & pairs[2:]))] = True

    # value[p]: the number (of at most 3 digits) whose last digit is at position p
    padded_digit = np.zeros(data.size + 2, dtype=np.uint8)
    np.multiply(digit, is_digit, out=padded_digit[2:])
    value = np.multiply(padded_digit[:-2], padded_is_digit[1:-1], dtype=np.uint16)
    value *= 100
    value += padded_digit[2:]
    value += padded_digit[1:-1] * np.uint8(10)
    good = ~bad
    if good.all():  # the usual case: the numbers are exactly the pixels, row after row
        pixels = value[token_end].reshape(-1, _N_PIXELS)
    else:
        pixels = value[token_end[first_token[good, None] + _PIXEL_COLUMNS]]
    images = np.empty((newlines.size, _N_PIXELS), dtype=np.uint8)
    images[good] = pixels
    bad[good] = pixels.max(axis=1) > 255
    for line in np.flatnonzero(bad):
        text = chunk[line_start[line] : newlines[line]]
        images[line], emotion[line], usage[line] = _parse_row(text, layout, first_line + line)
    return images, emotion, usage


def _parse_row(line: bytes, layout: _Layout, line_number: int) -> tuple[np.ndarray, int, int]:
    """Parse one CSV line in pure Python, raising a precise ``DataFileError`` if it is bad."""
    where = f"'{layout.source}' line {line_number} (data row {line_number - 2})"
    text = line.decode("utf-8", "replace").rstrip("\r")
    fields = text.split(",")
    if len(fields) != layout.n_columns:
        raise DataFileError(
            f"{where} has {len(fields)} comma-separated field(s); expected "
            f"{layout.n_columns} as in the header. Fix or remove the row. " + received(text)
        )
    emotion = fields[layout.emotion].strip()
    if not (emotion.isascii() and emotion.isdigit() and int(emotion) < len(FER2013_CLASSES)):
        raise DataFileError(
            f"{where}: emotion must be an integer label 0..{len(FER2013_CLASSES) - 1} "
            f"({', '.join(FER2013_CLASSES)}). Fix or remove the row. " + received(emotion)
        )
    tokens = fields[layout.pixels].split()
    for index, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            raise DataFileError(
                f"{where}: pixel {index} is not a number; pixels must be space-separated "
                f"integers 0..255. Fix or remove the row. " + received(token)
            )
    if len(tokens) != _N_PIXELS:
        raise DataFileError(
            f"{where} has {len(tokens)} pixel values; expected {_N_PIXELS} "
            f"({_SIDE}x{_SIDE}). Fix or remove the row. " + received(fields[layout.pixels])
        )
    values = np.array([int(token) for token in tokens])
    if values.max() > 255:
        index = int(values.argmax())
        raise DataFileError(
            f"{where}: pixel {index} is {values[index]}; pixel values must be integers "
            f"0..255. Fix or remove the row. " + received(tokens[index])
        )
    usage = fields[layout.usage].strip()
    if usage not in SPLIT_ATTRIBUTES:
        raise DataFileError(
            f"{where}: unknown Usage; expected one of {list(SPLIT_ATTRIBUTES)}. Fix or "
            f"remove the row. " + received(usage)
        )
    return values.astype(np.uint8), int(emotion), _SPLITS.index(usage)


# ---------------------------------------------------------------------- image folder


def load_image_folder(
    path: str | os.PathLike,
    *,
    size: int | None = None,
    gray: bool = False,
    crop_faces: bool = False,
    min_face: int = 30,
    on_no_face: str = "error",
) -> Bunch:
    """Load your own labelled photos from a folder with one subfolder per class.

    Parameters
    ----------
    path : str or os.PathLike
        A folder laid out as ``<path>/<class>/*.png|jpg|jpeg|gif|bmp`` (any case), e.g.
        ``photos/happy/*.jpg`` and ``photos/sad/*.png``; photos of any size, colour or gray.
    size : int, optional
        Side of the square images returned, in pixels: every photo (or face crop) is resized
        to ``size`` x ``size`` with Pillow's antialiased bilinear filter, without keeping its
        aspect ratio. Default: 224 (the input of the face-trained MobileNet and of most
        ImageNet backbones), or 48 (FER2013's size) with ``gray=True``.
    gray : bool, default=False
        Return gray ``(n, size, size)`` images (ITU-R 601 luma) rather than RGB
        ``(n, size, size, 3)``.
    crop_faces : bool, default=False
        First crop each photo to its largest face, found by :func:`skfer.faces.detect_faces`
        and cut out by :func:`skfer.faces.crop_faces` (square, 20% margin); needs the
        ``mtcnn`` package (``pip install 'skfer[faces]'``).
    min_face : int, default=30
        With ``crop_faces``: smallest face searched for, in pixels (at least 12).
    on_no_face : {'error', 'skip'}, default='error'
        With ``crop_faces``, a photo without a face: 'error' raises a ``DataFileError``
        listing every such photo; 'skip' leaves them out and lists them in ``no_face``.

    Returns
    -------
    sklearn.utils.Bunch
        ``images`` (uint8), ``target`` (int64, index into ``class_names``), ``class_names``
        (the subfolder names, sorted), ``paths`` (the file of each image, as str),
        ``no_face`` (paths of the photos left out for want of a face), ``source`` and
        ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (``NotADirectoryError`` if it is a file).
    DataFileError
        If an entry is not an image file, an image cannot be decoded, a class folder is
        empty, a file lies outside the class folders, or (``on_no_face='error'``) a photo
        has no face; the message names the files.
    ValueError
        On a bad ``size``, ``min_face`` or ``on_no_face``.
    """
    from PIL import Image

    from . import faces

    root = Path(path)
    if not root.is_dir():
        kind = NotADirectoryError if root.exists() else FileNotFoundError
        raise kind(
            f"No photo folder at '{root}'; pass a folder with one subfolder of photos per class "
            f"(<folder>/happy/*.jpg, <folder>/sad/*.png, ...). Received: {str(root)!r}"
        )
    side = (48 if gray else 224) if size is None else size
    faces._check_positive(side, "size")
    faces._check_face_size(min_face, "min_face")
    if on_no_face not in ("error", "skip"):
        raise ValueError(f"on_no_face must be 'error' or 'skip'. Received: {on_no_face!r}")
    files = []  # (path, class index)
    class_dirs = _visible(root)
    for index, class_dir in enumerate(class_dirs):
        if not class_dir.is_dir():
            raise DataFileError(
                f"'{class_dir}' lies directly in the photo folder; photos go in one subfolder "
                "per class (<folder>/<class>/<photo>). Move it into a class folder or remove "
                "it. " + received(class_dir.name)
            )
        found = _class_images(class_dir, faces.IMAGE_SUFFIXES)
        if not found:
            raise DataFileError(
                f"Class folder '{class_dir}' holds no photos; add photos to it or remove it. "
                + received(class_dir.name)
            )
        files.extend((file, index) for file in found)
    if not class_dirs:
        raise DataFileError(
            f"No class folders in '{root}'; expected one subfolder per class, named after "
            "the class, holding its photos (<folder>/happy/*.jpg, ...). " + received(str(root))
        )
    images, kept, no_face = [], [], []
    for file, index in files:
        photo = faces.load_image(file)
        if not crop_faces:
            image = Image.fromarray(photo).convert("L" if gray else "RGB")
            images.append(np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)))
        elif boxes := faces.detect_faces(photo, min_size=min_face):
            largest = max(boxes, key=lambda box: box.width * box.height)
            images.append(faces.crop_faces(photo, [largest], size=side, grayscale=gray)[0])
        else:
            no_face.append(str(file))
            continue
        kept.append((str(file), index))
    if no_face and on_no_face == "error":
        shown = ", ".join(f"'{name}'" for name in no_face[:10])
        more = f" and {len(no_face) - 10} more" if len(no_face) > 10 else ""
        raise DataFileError(
            f"No face of at least {min_face} px found in {len(no_face)} of {len(files)} "
            f"photos: {shown}{more}. Remove or crop them by hand, lower min_face, or pass "
            "on_no_face='skip' to leave them out. " + received(no_face[0])
        )
    class_names = tuple(class_dir.name for class_dir in class_dirs)
    target = np.array([index for _, index in kept], dtype=np.int64)
    per_class = np.bincount(target, minlength=len(class_names))
    emptied = [name for name, n in zip(class_names, per_class, strict=True) if n == 0]
    if emptied:
        raise DataFileError(
            f"No photo of class(es) {emptied} shows a face of at least {min_face} px; add "
            "photos with faces or lower min_face. " + received(str(root))
        )
    shape = (len(kept), side, side) if gray else (len(kept), side, side, 3)
    counts = ", ".join(f"{name} ({n})" for name, n in zip(class_names, per_class, strict=True))
    cropped = ", each cropped to its largest face" if crop_faces else ""
    return Bunch(
        images=np.stack(images).reshape(shape),
        target=target,
        class_names=class_names,
        paths=np.array([name for name, _ in kept]),
        no_face=tuple(no_face),
        source=str(root),
        DESCR=f"{len(kept)} photos from '{root}'{cropped}, resized to {side}x{side} "
        f"{'gray' if gray else 'RGB'}. Classes (subfolders): {counts}.",
    )


def _read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``<root>/{train,test}/<class>/*`` into ``(images, target, usage code, rows)``."""
    import tensorflow as tf

    valid = ", ".join(FER2013_CLASSES)
    files = []  # (relative path, split, class index)
    for split_dir in _visible(root):
        if not split_dir.is_dir():
            continue
        default_split = _FOLDER_SPLITS.get(split_dir.name.lower())
        if default_split is None:
            raise DataFileError(
                f"Unexpected folder '{split_dir}' in the FER2013 image folder; expected only "
                f"'train' and 'test' subfolders, each with one folder per class ({valid}). "
                + received(split_dir.name)
            )
        for class_dir in _visible(split_dir):
            label = class_dir.name.lower()
            if not class_dir.is_dir() or label not in FER2013_CLASSES:
                raise DataFileError(
                    f"Unknown class folder '{class_dir}'; FER2013 class folders are named "
                    f"{valid} (any case). Rename or remove it. " + received(class_dir.name)
                )
            for file in _class_images(class_dir, _IMAGE_SUFFIXES):
                prefix = file.name.partition("_")[0]
                split = prefix if prefix in SPLIT_ATTRIBUTES else default_split
                files.append((file.relative_to(root).as_posix(), split, label))
    if not files:
        raise DataFileError(
            f"No images found under '{root}'; expected the Kaggle FER2013 layout "
            f"<folder>/train/<class>/*.png|jpg|jpeg and <folder>/test/<class>/*. "
            + received(str(root))
        )
    files.sort()
    images = np.empty((len(files), _SIDE, _SIDE), dtype=np.uint8)
    for index, (relative, _, _) in enumerate(files):
        file = root / relative
        try:
            image = tf.io.decode_image(
                file.read_bytes(), channels=1, expand_animations=False
            ).numpy()
        except tf.errors.OpError as error:
            raise DataFileError(
                f"Cannot decode image '{file}' ({error.message.strip()}). Replace or remove "
                "the file. " + received(file.name)
            ) from error
        if image.shape[:2] != (_SIDE, _SIDE):
            raise DataFileError(
                f"Image '{file}' is {image.shape[1]}x{image.shape[0]} pixels; FER2013 images "
                f"must be {_SIDE}x{_SIDE} (this loader does not resize). Resize or remove it. "
                + received(file.name)
            )
        images[index] = image[:, :, 0]
    target = np.array([FER2013_CLASSES.index(label) for _, _, label in files], dtype=np.int64)
    usage = np.array([_SPLITS.index(split) for _, split, _ in files], dtype=np.int8)
    return images, target, usage, np.arange(len(files), dtype=np.int64)


def _class_images(class_dir: Path, suffixes: Sequence[str]) -> list[Path]:
    """Return the files of a class folder, sorted; raise if one is not an image file."""
    files = _visible(class_dir)
    for file in files:
        if file.suffix.lower() not in suffixes or not file.is_file():
            raise DataFileError(
                f"'{file}' is not a {'/'.join(suffixes)} image file; the class "
                "folders may hold only images. Remove or convert it. " + received(file.name)
            )
    return files


def _visible(folder: Path) -> list[Path]:
    """Return the entries of ``folder`` not starting with a dot, sorted by name."""
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
