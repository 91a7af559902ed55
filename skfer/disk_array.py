"""A read-only array kept in a temporary file and read by rows, for caches larger than memory.

The block-12 maps of the face-trained MobileNet at 224 px take 2.9 GB for the 28,709 FER2013
Training images, and a run caches them for its mirror images and test sets too. Held in
memory they set the run's peak; in a :class:`DiskArray` only the rows a batch asks for are
read into memory (``os.pread`` into a fresh array), and the file's pages live in the
operating system's page cache, which it can reclaim. The file has no name (``O_TMPFILE``
where the system has it): it is gone when the array is, or when the process ends.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref

import numpy as np

__all__ = ["DiskArray"]


class DiskArray:
    """An array of ``shape`` and ``dtype`` in an unnamed temporary file, written in row
    blocks (:meth:`write`) and read by rows (indexing returns an in-memory ndarray).

    Parameters
    ----------
    shape : tuple of int
        Rows first.
    dtype : dtype-like
        Element type.
    directory : str or None
        Where the file lives; None: :func:`tempfile.gettempdir` (``TMPDIR``).

    Notes
    -----
    Indexing supports what batching needs: an integer, a slice, an integer or boolean array
    of rows, and a tuple whose first item is one of those (the rest applied to the rows
    read). ``np.asarray`` reads every row. :meth:`take` gives a read-only view of some rows
    that reads them from the same file.
    """

    def __init__(self, shape, dtype, directory: str | None = None):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._row_shape = self.shape[1:]
        self._row_bytes = self.dtype.itemsize * math.prod(self._row_shape)
        self._directory = directory or tempfile.gettempdir()
        self._file = tempfile.TemporaryFile(dir=self._directory)
        weakref.finalize(self, self._file.close)  # frees its disk space
        self._file.truncate(self.nbytes)
        self._writeable = True
        self._rows = None  # a view's rows in its base's file (see take)
        self.base = None

    def take(self, rows) -> DiskArray:
        """A read-only view of ``rows`` (an integer array, any order, repeats allowed): it
        reads them from this array's file and holds no bytes of its own.

        Raises
        ------
        IndexError
            If ``rows`` is not a 1-d integer array of rows in range.
        """
        rows = self._row_indices(rows)
        if self._rows is not None:
            rows = self._rows[rows]
        view = object.__new__(DiskArray)
        view.__dict__.update(self.__dict__)
        view.shape = (len(rows), *self._row_shape)
        view._rows, view._writeable = rows, False
        view.base = self if self.base is None else self.base  # keeps the file open
        return view

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DiskArray(shape={self.shape}, dtype={self.dtype.name})"

    def setflags(self, write: bool) -> None:
        """``write=False`` makes the array read-only, as :meth:`numpy.ndarray.setflags` does.

        Raises
        ------
        ValueError
            If ``write`` would make a read-only array writeable again.
        """
        if write and not self._writeable:
            raise ValueError("A read-only DiskArray cannot be made writeable again.")
        self._writeable = bool(write)

    def row_blocks(self, block_bytes: int):
        """Consecutive blocks of rows, each about ``block_bytes`` (at least one row), in memory
        one at a time."""
        step = max(1, block_bytes // max(1, self._row_bytes))
        for start in range(0, len(self), step):
            yield self._read_range(start, min(start + step, len(self)))

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store ``rows`` as rows ``start, start + 1, ...``.

        Raises
        ------
        ValueError
            If the array is read-only, or ``rows`` do not fit its row shape or its length.
        """
        if not self._writeable:
            raise ValueError("This DiskArray is read-only: the cache shares it.")
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self._row_shape or not 0 <= start <= len(self) - len(rows):
            raise ValueError(
                f"Rows of shape {rows.shape} do not fit at row {start} of a DiskArray of "
                f"shape {self.shape}."
            )
        view = memoryview(rows.reshape(-1).view(np.uint8))
        offset = start * self._row_bytes
        while view:
            try:
                written = os.pwrite(self._file.fileno(), view, offset)
            except OSError as error:
                raise OSError(
                    f"Could not write {self.nbytes:,} bytes of cached features to "
                    f"{self._directory}: {error}. Point TMPDIR at a disk with room, or lower "
                    f"the cache's bound."
                ) from error
            view, offset = view[written:], offset + written

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, (int, np.integer)):
            row = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"Row {key} is out of range for {len(self)} rows.")
            return self._read_range(row, row + 1)[0][rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = (
                self._read_range(start, max(start, stop))
                if step == 1
                else self._read_rows(np.arange(start, stop, step))
            )
        else:
            rows = self._read_rows(self._row_indices(key))
        return rows[(slice(None), *rest)] if rest else rows

    def __array__(self, dtype=None, copy=None):
        rows = self._read_range(0, len(self))
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def _row_indices(self, key) -> np.ndarray:
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(
                    f"A boolean index must have one value per row ({len(self)}). Received: "
                    f"shape {key.shape}"
                )
            return np.flatnonzero(key)
        if key.ndim != 1 or not np.issubdtype(key.dtype, np.integer):
            raise IndexError(
                f"A DiskArray is indexed by an integer, a slice, or a 1-d integer or boolean "
                f"array of rows. Received: an array of shape {key.shape} and dtype {key.dtype}"
            )
        rows = np.where(key < 0, key + len(self), key)
        if len(rows) and not (0 <= rows.min() and rows.max() < len(self)):
            raise IndexError(f"Rows {key.min()}..{key.max()} are out of range for {len(self)}.")
        return rows

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        if self._rows is not None:
            return self._read_rows(np.arange(start, stop))
        out = np.empty((stop - start, *self._row_shape), self.dtype)
        self._read_into(memoryview(out.reshape(-1).view(np.uint8)), start * self._row_bytes)
        return out

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        if self._rows is not None:
            rows = self._rows[rows]
        out = np.empty((len(rows), *self._row_shape), self.dtype)
        flat, size = memoryview(out.reshape(-1).view(np.uint8)), self._row_bytes
        for i, row in enumerate(rows.tolist()):
            self._read_into(flat[i * size : (i + 1) * size], row * size)
        return out

    def _read_into(self, view: memoryview, offset: int) -> None:
        while view:
            read = os.preadv(self._file.fileno(), [view], offset)
            if not read:
                raise OSError(f"The file behind {self!r} ended early at byte {offset}.")
            view, offset = view[read:], offset + read
