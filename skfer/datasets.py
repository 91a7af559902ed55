"""Load FER2013 from the Kaggle CSV (plain or gzip) or the Kaggle image-folder layout.

The CSV parser is vectorised with numpy: the file is decompressed in pieces on the main
thread while a worker thread parses whole lines of the previous pieces, so a full
FER2013 CSV loads in about the time it takes to decompress it. Every row is validated:
a row that the fast path cannot take is re-parsed in pure Python, which accepts it
(leading zeros, tabs, padded fields) or raises a ``ValueError`` naming its CSV line.
Nothing is silently dropped or coerced.

:func:`fer2013_integrity` reports exact duplicates (within and across splits),
duplicates with conflicting labels and blank images of a loaded dataset, and
:func:`drop_test_duplicates` removes from Training the images that have an exact copy
in a test split (an opt-in leakage filter; :func:`load_fer2013` keeps every row).
"""

from __future__ import annotations

import os
import zlib
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.utils import Bunch

from .ferplus import FERPLUS_CLASSES, load_ferplus  # noqa: F401 (re-exported)

FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
SPLIT_ATTRIBUTES = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}

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
    ValueError
        If the data are malformed (the message names the line or file), or a requested
        split is unknown or absent.
    """
    source = os.fspath(path)
    wanted = _check_splits(splits)
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
    if wanted is None:
        wanted = present
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ValueError(
            f"Split(s) {missing} requested but not in '{source}', which holds {list(present)}. "
            f"Request only splits that are present. Received: splits={splits!r}"
        )
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


def _check_splits(splits: Sequence[str] | None) -> tuple[str, ...] | None:
    """Map requested split names (Usage or attribute names) to Usage names."""
    if splits is None:
        return None
    if isinstance(splits, str):
        splits = [splits]
    by_attribute = {attribute: name for name, attribute in SPLIT_ATTRIBUTES.items()}
    names = []
    for split in splits:
        name = by_attribute.get(split, split)
        if name not in SPLIT_ATTRIBUTES:
            raise ValueError(
                f"Unknown FER2013 split {split!r}. Use one of {list(SPLIT_ATTRIBUTES)} "
                f"(or {list(by_attribute)}). Received: splits={list(splits)}"
            )
        names.append(name)
    if not names:
        raise ValueError("splits= is empty; name at least one split or pass None for all.")
    return tuple(names)


def _received(value: str, limit: int = 80) -> str:
    """Return the ``Received: ...`` tail of an error message, truncated to ``limit``."""
    if len(value) > limit:
        value = value[:limit] + "..."
    return f"Received: {value!r}"


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
            raise ValueError(
                f"'{path}' is not a valid gzip file ({error}). Re-download or re-compress it. "
                + _received(path.name)
            ) from error
        if not inflater.eof:
            raise ValueError(
                f"'{path}' is a truncated gzip file. Re-download or re-compress it. "
                + _received(path.name)
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
        raise ValueError(
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
        raise ValueError(
            f"'{path}' has a header but no data rows; expected one row per image after "
            "line 1. " + _received(header.decode("utf-8", "replace").strip())
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
        raise ValueError(
            f"'{source}' line 1: the CSV header lacks column(s) {missing}; expected the "
            f"Kaggle FER2013 header '{','.join(_HEADER)}'. Fix the header line. " + _received(text)
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
    """Parse one CSV line in pure Python, raising a precise ``ValueError`` if it is bad."""
    where = f"'{layout.source}' line {line_number} (data row {line_number - 2})"
    text = line.decode("utf-8", "replace").rstrip("\r")
    fields = text.split(",")
    if len(fields) != layout.n_columns:
        raise ValueError(
            f"{where} has {len(fields)} comma-separated field(s); expected "
            f"{layout.n_columns} as in the header. Fix or remove the row. " + _received(text)
        )
    emotion = fields[layout.emotion].strip()
    if not (emotion.isascii() and emotion.isdigit() and int(emotion) < len(FER2013_CLASSES)):
        raise ValueError(
            f"{where}: emotion must be an integer label 0..{len(FER2013_CLASSES) - 1} "
            f"({', '.join(FER2013_CLASSES)}). Fix or remove the row. " + _received(emotion)
        )
    tokens = fields[layout.pixels].split()
    for index, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            raise ValueError(
                f"{where}: pixel {index} is not a number; pixels must be space-separated "
                f"integers 0..255. Fix or remove the row. " + _received(token)
            )
    if len(tokens) != _N_PIXELS:
        raise ValueError(
            f"{where} has {len(tokens)} pixel values; expected {_N_PIXELS} "
            f"({_SIDE}x{_SIDE}). Fix or remove the row. " + _received(fields[layout.pixels])
        )
    values = np.array([int(token) for token in tokens])
    if values.max() > 255:
        index = int(values.argmax())
        raise ValueError(
            f"{where}: pixel {index} is {values[index]}; pixel values must be integers "
            f"0..255. Fix or remove the row. " + _received(tokens[index])
        )
    usage = fields[layout.usage].strip()
    if usage not in SPLIT_ATTRIBUTES:
        raise ValueError(
            f"{where}: unknown Usage; expected one of {list(SPLIT_ATTRIBUTES)}. Fix or "
            f"remove the row. " + _received(usage)
        )
    return values.astype(np.uint8), int(emotion), _SPLITS.index(usage)


# ---------------------------------------------------------------------- image folder


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
            raise ValueError(
                f"Unexpected folder '{split_dir}' in the FER2013 image folder; expected only "
                f"'train' and 'test' subfolders, each with one folder per class ({valid}). "
                + _received(split_dir.name)
            )
        for class_dir in _visible(split_dir):
            label = class_dir.name.lower()
            if not class_dir.is_dir() or label not in FER2013_CLASSES:
                raise ValueError(
                    f"Unknown class folder '{class_dir}'; FER2013 class folders are named "
                    f"{valid} (any case). Rename or remove it. " + _received(class_dir.name)
                )
            for file in _visible(class_dir):
                if file.suffix.lower() not in _IMAGE_SUFFIXES or not file.is_file():
                    raise ValueError(
                        f"'{file}' is not a {'/'.join(_IMAGE_SUFFIXES)} image file; the class "
                        "folders may hold only images. Remove or convert it. "
                        + _received(file.name)
                    )
                prefix = file.name.partition("_")[0]
                split = prefix if prefix in SPLIT_ATTRIBUTES else default_split
                files.append((file.relative_to(root).as_posix(), split, label))
    if not files:
        raise ValueError(
            f"No images found under '{root}'; expected the Kaggle FER2013 layout "
            f"<folder>/train/<class>/*.png|jpg|jpeg and <folder>/test/<class>/*. "
            + _received(str(root))
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
            raise ValueError(
                f"Cannot decode image '{file}' ({error.message.strip()}). Replace or remove "
                "the file. " + _received(file.name)
            ) from error
        if image.shape[:2] != (_SIDE, _SIDE):
            raise ValueError(
                f"Image '{file}' is {image.shape[1]}x{image.shape[0]} pixels; FER2013 images "
                f"must be {_SIDE}x{_SIDE} (this loader does not resize). Resize or remove it. "
                + _received(file.name)
            )
        images[index] = image[:, :, 0]
    target = np.array([FER2013_CLASSES.index(label) for _, _, label in files], dtype=np.int64)
    usage = np.array([_SPLITS.index(split) for _, split, _ in files], dtype=np.int8)
    return images, target, usage, np.arange(len(files), dtype=np.int64)


def _visible(folder: Path) -> list[Path]:
    """Return the entries of ``folder`` not starting with a dot, sorted by name."""
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))


# ------------------------------------------------------------------------- integrity

Member = tuple[str, int]
"""One image of a loaded dataset: ``(Usage name, row)``, e.g. ``("PublicTest", 28712)``."""


@dataclass(frozen=True)
class IntegrityReport:
    """Exact duplicates, conflicting labels and blank images of a loaded FER2013 Bunch.

    Members are ``(Usage name, row)`` pairs, ``row`` being the split's ``rows`` entry
    (the 0-based CSV data row). Groups are tuples of members sorted by row, and groups
    are sorted by their first row.

    Attributes
    ----------
    n_images, n_distinct : int
        Number of images in all splits, and of distinct images (byte-for-byte).
    duplicate_groups : tuple of tuple of Member
        Every set of two or more identical images.
    within_split_groups : dict of str to int
        For each split present, the number of groups whose members all lie in it.
    cross_split_groups : dict of tuple of str to int
        Number of groups spanning two or more splits, keyed by the splits they span
        (e.g. ``("Training", "PublicTest")``); only combinations that occur.
    test_images_in_train : dict of str to int
        For each test split present, how many of its images have an exact copy in
        Training (0 where Training is not loaded).
    conflicting_groups : tuple of tuple of Member
        The duplicate groups whose members carry two or more different labels.
    blank, all_black : tuple of Member
        Constant images (all pixels equal), and those of them that are all 0.
    """

    n_images: int
    n_distinct: int
    duplicate_groups: tuple[tuple[Member, ...], ...]
    within_split_groups: dict[str, int]
    cross_split_groups: dict[tuple[str, ...], int]
    test_images_in_train: dict[str, int]
    conflicting_groups: tuple[tuple[Member, ...], ...]
    blank: tuple[Member, ...]
    all_black: tuple[Member, ...]

    def summary(self) -> str:
        """Return the counts as a few lines of text."""
        within = ", ".join(f"{name} {n}" for name, n in self.within_split_groups.items())
        cross = ", ".join(f"{' & '.join(key)} {n}" for key, n in self.cross_split_groups.items())
        in_train = ", ".join(f"{name} {n}" for name, n in self.test_images_in_train.items())
        return "\n".join(
            [
                f"FER2013 integrity: {self.n_images} images, {self.n_distinct} distinct.",
                f"Exact-duplicate groups: {len(self.duplicate_groups)}; within one split: "
                f"{within}; across splits: {sum(self.cross_split_groups.values())}"
                + (f" ({cross})." if cross else "."),
                f"Test images with an exact copy in Training: {in_train or 'no test split'}.",
                f"Duplicate groups with conflicting labels: {len(self.conflicting_groups)}.",
                f"Blank (constant) images: {len(self.blank)}, of which all-black: "
                f"{len(self.all_black)}.",
            ]
        )


def fer2013_integrity(data: Bunch) -> IntegrityReport:
    """Find exact duplicates, conflicting labels and blank images in loaded FER2013 data.

    Parameters
    ----------
    data : sklearn.utils.Bunch
        As returned by :func:`load_fer2013`: one Bunch per split (``train``,
        ``public_test``, ``private_test``) with ``images``, ``target`` and ``rows``.

    Returns
    -------
    IntegrityReport
        The duplicate groups and blank images, with their counts; ``summary()`` gives
        them as text. Images are compared byte-for-byte, all splits at once.
    """
    names, code, rows, target, flat = _pool(data)
    image_id = _image_ids(flat)
    n_ids = int(image_id.max(initial=-1)) + 1
    members = np.flatnonzero(np.bincount(image_id, minlength=n_ids)[image_id] > 1)
    members = members[np.lexsort((code[members], rows[members], image_id[members]))]
    groups = (
        np.split(members, np.flatnonzero(np.diff(image_id[members])) + 1) if members.size else []
    )
    groups.sort(key=lambda group: (rows[group[0]], code[group[0]]))
    span = [tuple(np.unique(code[group]).tolist()) for group in groups]
    cross = Counter(codes for codes in span if len(codes) > 1)
    in_train = np.zeros(n_ids, dtype=bool)
    if "Training" in names:
        in_train[image_id[code == names.index("Training")]] = True
    low, high = flat.min(axis=1), flat.max(axis=1)
    blank = np.flatnonzero(low == high)
    return IntegrityReport(
        n_images=int(code.size),
        n_distinct=n_ids,
        duplicate_groups=tuple(_members(names, code, rows, group) for group in groups),
        within_split_groups={name: span.count((c,)) for c, name in enumerate(names)},
        cross_split_groups={
            tuple(names[c] for c in codes): n for codes, n in sorted(cross.items())
        },
        test_images_in_train={
            name: int(in_train[image_id[code == c]].sum())
            for c, name in enumerate(names)
            if name != "Training"
        },
        conflicting_groups=tuple(
            _members(names, code, rows, group)
            for group in groups
            if np.unique(target[group]).size > 1
        ),
        blank=_members(names, code, rows, blank),
        all_black=_members(names, code, rows, blank[high[blank] == 0]),
    )


def drop_test_duplicates(data: Bunch) -> tuple[Bunch, np.ndarray]:
    """Remove from Training every image that has an exact copy in a test split.

    An opt-in leakage filter: train on the result and compare with training on ``data``
    to measure how much the copies inflate test scores. ``data`` is not modified.

    Parameters
    ----------
    data : sklearn.utils.Bunch
        As returned by :func:`load_fer2013`, with a ``train`` split.

    Returns
    -------
    filtered : sklearn.utils.Bunch
        A copy of ``data`` whose ``train`` split lacks the images that are byte-for-byte
        identical to an image of ``public_test`` or ``private_test``; other splits are
        shared with ``data``, and ``DESCR`` says how many rows were dropped.
    dropped_rows : numpy.ndarray
        The ``rows`` (0-based CSV data rows, int64, ascending) of the dropped Training
        images; empty when no test split is loaded.

    Raises
    ------
    ValueError
        If ``data`` has no ``train`` split.
    """
    if "train" not in data:
        raise ValueError(
            "drop_test_duplicates needs the Training split; load it with "
            "load_fer2013(path) or splits=[..., 'Training']. "
            + _received(str([key for key in SPLIT_ATTRIBUTES.values() if key in data]))
        )
    names, code, _, _, flat = _pool(data)
    image_id = _image_ids(flat)
    in_test = np.zeros(image_id.size, dtype=bool)
    in_test[image_id[code != names.index("Training")]] = True
    drop = in_test[image_id[code == names.index("Training")]]
    train = data.train
    filtered = Bunch(**data)
    filtered.train = Bunch(
        **{
            key: value[~drop] if isinstance(value, np.ndarray) else value
            for key, value in train.items()
        }
    )
    tests = [name for name in names if name != "Training"]
    filtered.DESCR = (
        f"{data.get('DESCR', '')} drop_test_duplicates removed {int(drop.sum())} Training "
        f"image(s) with an exact copy in {' or '.join(tests) or 'a test split (none loaded)'}; "
        f"{int((~drop).sum())} remain."
    ).lstrip()
    return filtered, np.sort(train.rows[drop]).astype(np.int64)


def _pool(data: Bunch) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack the loaded splits: ``(Usage names, split code, rows, target, flat images)``."""
    names = tuple(name for name, attribute in SPLIT_ATTRIBUTES.items() if attribute in data)
    if not names:
        raise ValueError(
            f"No FER2013 split in the Bunch; expected at least one of "
            f"{list(SPLIT_ATTRIBUTES.values())} as returned by load_fer2013. "
            + _received(str(list(data)))
        )
    splits = [data[SPLIT_ATTRIBUTES[name]] for name in names]
    code = np.concatenate(
        [np.full(split.target.size, c, dtype=np.int64) for c, split in enumerate(splits)]
    )
    rows = np.concatenate([np.asarray(split.rows, dtype=np.int64) for split in splits])
    target = np.concatenate([np.asarray(split.target) for split in splits])
    flat = np.concatenate([split.images.reshape(split.target.size, -1) for split in splits])
    return names, code, rows, target, flat


def _image_ids(flat: np.ndarray) -> np.ndarray:
    """Number the distinct rows of C-contiguous ``flat`` 0, 1, ... (exact: compares bytes)."""
    keys = flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize))).ravel()
    return np.unique(keys, return_inverse=True)[1].ravel()


def _members(
    names: tuple[str, ...], code: np.ndarray, rows: np.ndarray, index: np.ndarray
) -> tuple[Member, ...]:
    """Return the images at ``index`` of the pooled splits as ``(Usage name, row)`` pairs."""
    return tuple(
        (names[c], r) for c, r in zip(code[index].tolist(), rows[index].tolist(), strict=True)
    )
