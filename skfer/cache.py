"""A bounded in-memory cache of frozen-backbone features, keyed so that it is never stale.

While the backbone (or its lower blocks) is frozen and the input is not augmented, its output
does not change between epochs, between the experts of :class:`~skfer.OneVsAllExperts`, or
between the folds of a search that fit the same backbone on the same images. The key is a
digest of everything the features depend on: the feature graph's configuration (backbone, input
size, precision, and the pooling or the block boundary), the values of its weights, the storage
dtype, and the bytes, shape and dtype of the images, hashed row by row: images whose rows all
lie in a stored array's input (a subset, in any order) get those rows of it without computing,
a view that holds no bytes of its own where the array is on disk, or a copy in memory. Features
are computed in chunks straight into their final array (:func:`predict_in_chunks`), so a
float16 cache never has a float32 copy of the whole set. An array of ``spill_bytes`` or more
(block maps, say) is kept on disk in a :class:`~skfer.disk_array.DiskArray` and read by the
batch, so that it does not count towards the process's memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cached_property

import keras
import numpy as np

from .backend import predict_in_full_batches
from .disk_array import DiskArray

__all__ = [
    "CHUNK_BYTES",
    "SPILL_BYTES",
    "FeatureCache",
    "feature_cache",
    "fingerprint",
    "predict_in_chunks",
    "row_fingerprints",
]

CHUNK_BYTES = 64 * 1024**2
"""Float32 bytes of input or output that :func:`predict_in_chunks` hands Keras per call."""

SPILL_BYTES = 256 * 1024**2
"""Stored arrays of this size or larger go to disk (:class:`~skfer.disk_array.DiskArray`)."""

ROW_DIGEST_DTYPE = np.dtype("S16")
"""One row's digest (:func:`row_fingerprints`)."""


def fingerprint(*parts) -> str:
    """Hex digest of arrays (bytes, shape, dtype; in memory or a
    :class:`~skfer.disk_array.DiskArray`) and JSON-serialisable values."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(repr((part.shape, part.dtype.str)).encode())
            digest.update(np.ascontiguousarray(part).data)
        elif isinstance(part, DiskArray):  # the same digest as its rows in memory
            digest.update(repr((part.shape, part.dtype.str)).encode())
            for rows in part.row_blocks(CHUNK_BYTES):
                digest.update(rows.data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def predict_in_chunks(
    model: keras.Model,
    x: np.ndarray,
    batch_size: int,
    *,
    dtype: str = "float32",
    chunk_bytes: int = CHUNK_BYTES,
    out: DiskArray | None = None,
) -> np.ndarray | DiskArray:
    """``predict_in_full_batches(model, x, batch_size)`` stored as ``dtype``, computed a chunk
    of whole batches at a time into one preallocated array.

    A chunk holds about ``chunk_bytes`` of float32 input or output, so neither a float32
    output nor Keras' float32 copy of an input in another float dtype (it casts such arrays
    whole) is ever made for all of ``x``. ``x`` may be a :class:`~skfer.disk_array.DiskArray`
    (it is read a chunk at a time), and so may the result: ``out``, of the output's shape and
    ``dtype``, is written a chunk at a time instead of an array in memory.

    Raises
    ------
    OverflowError
        If an output lies beyond the range of ``dtype`` (float16: 65504).
    """
    shape = (len(x), *model.output_shape[1:])
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != np.dtype(dtype):
        raise ValueError(
            f"out must be of shape {shape} and dtype {np.dtype(dtype).name}. Received: {out!r}"
        )
    row_bytes = 4 * max(math.prod(x.shape[1:]), math.prod(shape[1:]))
    chunk = max(1, chunk_bytes // (row_bytes * batch_size)) * batch_size
    for start in range(0, len(x), chunk):
        computed = predict_in_full_batches(model, x[start : start + chunk], batch_size)
        try:
            with np.errstate(over="raise"):
                stored = computed.astype(dtype, copy=False)
        except FloatingPointError:
            raise OverflowError(
                f"Outputs of {model.name} exceed the range of {dtype}; store them in float32 "
                f"or train without the cache (cache_features=False). Received: largest "
                f"magnitude {np.abs(computed).max():g} in rows {start}..{start + len(computed) - 1}"
            ) from None
        if isinstance(out, DiskArray):
            out.write(start, stored)
        else:
            out[start : start + len(stored)] = stored
    return out


class FeatureCache:
    """Least-recently-used store of feature arrays, bounded by their total size in bytes.

    Parameters
    ----------
    max_bytes : int
        Entries are evicted, oldest use first, to keep the total at or below this, before a
        new array is computed; an array larger than the bound is computed but not stored. The
        default, 4 GiB, holds the float16 block-12 maps of the face-trained MobileNet at 224
        px for all 28,709 FER2013 Training images (2.9 GB) and those of a test set and its
        mirror images.
    chunk_bytes : int
        Passed to :func:`predict_in_chunks`: about the memory that features need beyond their
        stored array.
    spill_bytes : int
        An array of this many bytes or more is stored on disk (:class:`~skfer.disk_array.
        DiskArray`, read by the batch) instead of in memory; ``max_bytes`` bounds both.
    directory : str or None
        Where arrays on disk live; None: the system's temporary directory (``TMPDIR``).

    Raises
    ------
    ValueError
        If a size is not a positive integer.
    """

    def __init__(
        self,
        max_bytes: int = 4 * 1024**3,
        chunk_bytes: int = CHUNK_BYTES,
        spill_bytes: int = SPILL_BYTES,
        directory: str | None = None,
    ):
        for name, value in [
            ("max_bytes", max_bytes),
            ("chunk_bytes", chunk_bytes),
            ("spill_bytes", spill_bytes),
        ]:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        self.max_bytes = int(max_bytes)
        self.chunk_bytes = int(chunk_bytes)
        self.spill_bytes = int(spill_bytes)
        self.directory = directory
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._provenance: dict[str, _Provenance] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(_own_bytes(array) for array in self._entries.values())

    @property
    def disk_bytes(self) -> int:
        """Bytes held on disk (:class:`~skfer.disk_array.DiskArray` entries), part of
        :attr:`nbytes`."""
        return sum(_own_bytes(a) for a in self._entries.values() if isinstance(a, DiskArray))

    def clear(self) -> None:
        """Drop every entry and reset the hit and miss counters."""
        with self._lock:
            self._entries.clear()
            self._provenance.clear()
            self.hits = self.misses = 0

    def features(
        self,
        feature_model: keras.Model,
        images: np.ndarray,
        *,
        graph: dict,
        batch_size: int,
        dtype: str = "float32",
    ) -> np.ndarray:
        """``feature_model.predict(images)`` stored as ``dtype``, computed once per distinct
        model and image (by :func:`predict_in_chunks`).

        ``images`` whose rows all lie in the input of a stored array of the same model (the
        fit part of a run whose fit and stacking parts were computed together, a fold of a
        cross-validation that saw the whole set) get those rows of it without computing: a
        view that reads the file of a :class:`~skfer.disk_array.DiskArray`, or a copy of an
        array in memory.

        Parameters
        ----------
        feature_model : keras.Model
            Maps images to features.
        images : ndarray
            The input batch. One of this cache's own arrays (the maps of a first stage, say)
            is keyed by what it was computed from rather than by hashing its bytes again.
        graph : dict
            What defines ``feature_model`` besides its weights (backbone name, input size,
            pooling...). Layer names are not part of the key: Keras numbers them per session.
        batch_size : int
            Prediction batch size.
        dtype : str
            Storage dtype; each chunk is cast on arrival (float16 halves the memory of
            activations that fit its range).

        Returns
        -------
        ndarray or DiskArray
            Read-only: callers share it. A :class:`~skfer.disk_array.DiskArray` where it
            takes ``spill_bytes`` or more.

        Raises
        ------
        OverflowError
            If a feature lies beyond the range of ``dtype`` (float16: 65504).
        """
        source = fingerprint(
            graph,
            {"stored_as": np.dtype(dtype).name, "rows": [list(images.shape[1:]), images.dtype.str]},
            *[np.asarray(w) for w in feature_model.get_weights()],
        )
        inputs = self._input_rows(images)
        key = fingerprint({"source": source}, inputs)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            found = self._rows_of(source, inputs)
            if found is not None:
                self.hits += 1
                return self._store(key, _Provenance(source, inputs), *found)
            self.misses += 1
        shape = (len(images), *feature_model.output_shape[1:])
        nbytes = np.dtype(dtype).itemsize * math.prod(shape)
        with self._lock:
            self._evict(room=nbytes)
        on_disk = DiskArray(shape, dtype, self.directory) if nbytes >= self.spill_bytes else None
        features = predict_in_chunks(
            feature_model,
            images,
            batch_size,
            dtype=dtype,
            chunk_bytes=self.chunk_bytes,
            out=on_disk,
        )
        with self._lock:
            return self._store(key, _Provenance(source, inputs), features)

    def _input_rows(self, array) -> np.ndarray:
        """One digest per row of ``array``: of what a stored array's row was computed from,
        else of the row's bytes (:func:`row_fingerprints`)."""
        with self._lock:
            key = next((key for key, stored in self._entries.items() if stored is array), None)
            if key is not None:
                return self._provenance[key].outputs
        return row_fingerprints(array)

    def _rows_of(self, source: str, inputs: np.ndarray) -> tuple | None:
        """``(array, rows, key)``: a stored array of ``source`` (the newest first) whose
        input holds every one of ``inputs``, their rows in it, and its key; None if none
        does. Call it holding the lock."""
        for key in reversed(self._entries):
            provenance = self._provenance[key]
            if provenance.source != source or len(provenance.inputs) < len(inputs):
                continue
            position = provenance.position
            try:
                rows = np.fromiter((position[row] for row in inputs.tolist()), np.intp)
            except KeyError:
                continue
            return self._entries[key], rows, key
        return None

    def _store(self, key, provenance, array, rows=None, parent=None):
        """Store ``array`` (or its ``rows``: a view of a DiskArray, whose bytes stay those of
        the entry ``parent``, or a copy) under ``key`` if it fits; return it read-only. Call
        it holding the lock."""
        if rows is not None:
            if not isinstance(array, DiskArray):
                array, parent = array[rows], None  # a copy: it outlives its parent
            else:
                array = array.take(rows)
        array.setflags(write=False)
        if self._evict(room=_own_bytes(array)):
            self._entries[key] = array
            self._provenance[key] = replace(provenance, parent=parent)
        return array

    def _evict(self, room: int) -> bool:
        """Evict entries, oldest use first, until ``room`` more bytes fit; False (evicting
        nothing) if they never can. An entry's views go with it. Call it holding the lock."""
        if room > self.max_bytes:
            return False
        while self.nbytes + room > self.max_bytes:
            key, _ = self._entries.popitem(last=False)
            del self._provenance[key]
            for view in [k for k, p in self._provenance.items() if p.parent == key]:
                del self._entries[view], self._provenance[view]
        return True


@dataclass(frozen=True)
class _Provenance:
    """What a stored array was computed from: ``source``, the digest of the feature model
    (graph, weights, storage dtype and the input rows' shape and dtype), and ``inputs``, one
    digest per input row; ``parent``: the key of the array whose file a view reads."""

    source: str
    inputs: np.ndarray
    parent: str | None = None

    @cached_property
    def position(self) -> dict[bytes, int]:
        """The row of each input digest."""
        return {row: index for index, row in enumerate(self.inputs.tolist())}

    @cached_property
    def outputs(self) -> np.ndarray:
        """One digest per output row: its source and its input's digest."""
        prefix = self.source.encode()
        return np.array(
            [_digest(prefix + row) for row in self.inputs.tolist()], dtype=ROW_DIGEST_DTYPE
        )


def _own_bytes(array) -> int:
    """The bytes ``array`` holds itself: none for a view of a DiskArray."""
    return 0 if isinstance(array, DiskArray) and array.base is not None else array.nbytes


def _digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=ROW_DIGEST_DTYPE.itemsize).digest()


def row_fingerprints(array) -> np.ndarray:
    """One digest per row of ``array`` (in memory or a :class:`~skfer.disk_array.DiskArray`)
    of its bytes; the row shape and dtype are left to the caller's key."""
    blocks = (
        array.row_blocks(CHUNK_BYTES)
        if isinstance(array, DiskArray)
        else [np.ascontiguousarray(array)]
    )
    return np.array(
        [_digest(row.data) for block in blocks for row in block], dtype=ROW_DIGEST_DTYPE
    )


feature_cache = FeatureCache()
"""The process-wide cache used by :class:`~skfer.TransferCNNClassifier`."""
