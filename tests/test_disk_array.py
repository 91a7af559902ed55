"""DiskArray: a read-only array in an unnamed temporary file, read by rows."""

from __future__ import annotations

import numpy as np
import pytest

from skfer.cache import FeatureCache, fingerprint
from skfer.disk_array import DiskArray


@pytest.fixture
def stored():
    values = np.random.default_rng(0).standard_normal((50, 3, 4)).astype(np.float16)
    array = DiskArray(values.shape, values.dtype)
    array.write(0, values[:20])
    array.write(20, values[20:])
    array.setflags(write=False)
    return values, array


@pytest.mark.parametrize(
    "key",
    [3, -1, slice(None), slice(5, 9), slice(None, None, 3), slice(40, 10), [4, 1, 1, -2],
     "mask", (slice(2, 5), 0), (7, 1, 2), ()],
)  # fmt: skip
def test_indexing_reads_the_rows_an_ndarray_would_give(stored, key):
    values, array = stored
    if isinstance(key, str):
        key = values[:, 0, 0] > 0
    elif isinstance(key, list):
        key = np.array(key)
    read = array[key]
    assert isinstance(read, np.ndarray | np.generic)
    np.testing.assert_array_equal(read, values[key])


def test_it_reads_whole_and_in_blocks_and_describes_itself(stored):
    values, array = stored
    np.testing.assert_array_equal(np.asarray(array), values)
    blocks = list(array.row_blocks(100))  # 24 bytes a row: 4 rows a block
    assert [len(block) for block in blocks] == [4] * 12 + [2]
    np.testing.assert_array_equal(np.concatenate(blocks), values)
    assert (len(array), array.ndim, array.size, array.nbytes) == (50, 3, 600, 1200)
    assert repr(array) == "DiskArray(shape=(50, 3, 4), dtype=float16)"


@pytest.mark.parametrize(
    "key, match",
    [(50, "Row 50 is out of range"), (np.array([2, 50]), "out of range for 50"),
     (np.zeros((2, 2), int), "1-d integer or boolean"), (np.zeros(3, bool), "one value per row"),
     (np.array([0.5]), "1-d integer or boolean")],
)  # fmt: skip
def test_bad_indices_are_errors_naming_them(stored, key, match):
    with pytest.raises(IndexError, match=match):
        stored[1][key]


def test_writes_are_checked_and_a_read_only_array_stays_so(stored):
    values, array = stored
    with pytest.raises(ValueError, match="read-only"):
        array.write(0, values[:1])
    with pytest.raises(ValueError, match="cannot be made writeable"):
        array.setflags(write=True)
    fresh = DiskArray((4, 2), "float32")
    with pytest.raises(ValueError, match="do not fit at row 3"):
        fresh.write(3, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="do not fit"):
        fresh.write(0, np.zeros((1, 3)))


def test_its_fingerprint_is_that_of_its_rows_in_memory(stored):
    values, array = stored
    assert fingerprint({"a": 1}, array) == fingerprint({"a": 1}, values)
    changed = values.copy()
    changed[49, 2, 3] += 1
    assert fingerprint(array) != fingerprint(changed)


def test_the_cache_spills_large_arrays_to_disk_and_reads_them_back(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, use_bias=False)])
    images = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    cache = FeatureCache(spill_bytes=10 * 16 * 4, directory=str(tmp_path))
    small = cache.features(model, images[:9], graph={}, batch_size=4)  # 576 bytes: in memory
    large = cache.features(model, images, graph={}, batch_size=4)  # 640 bytes: on disk
    assert isinstance(small, np.ndarray) and isinstance(large, DiskArray)
    assert (cache.nbytes, cache.disk_bytes) == (576 + 640, 640)
    np.testing.assert_allclose(large[:], model.predict(images, verbose=0), rtol=1e-6)
    assert cache.features(model, images, graph={}, batch_size=4) is large
    with pytest.raises(ValueError, match="read-only"):
        large.write(0, large[:1])
    assert list(tmp_path.iterdir()) == []  # the file has no name


@pytest.mark.parametrize("name", ["max_bytes", "chunk_bytes", "spill_bytes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_cache_sizes_are_validated(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        FeatureCache(**{name: value})


def test_a_view_of_some_rows_reads_them_from_the_same_file(stored):
    values, array = stored
    rows = np.array([7, 3, 3, 49, 0])
    view = array.take(rows)
    assert view.shape == (5, 3, 4) and view.base is array and len(view) == 5
    np.testing.assert_array_equal(np.asarray(view), values[rows])
    np.testing.assert_array_equal(view[1:4], values[rows][1:4])
    np.testing.assert_array_equal(view[np.array([4, 0])], values[rows][[4, 0]])
    np.testing.assert_array_equal(np.concatenate(list(view.row_blocks(30))), values[rows])
    nested = view.take([4, 0])
    assert nested.base is array
    np.testing.assert_array_equal(nested[:], values[[0, 7]])
    assert fingerprint(view) == fingerprint(values[rows])
    with pytest.raises(ValueError, match="read-only"):
        view.write(0, values[:1])
    with pytest.raises(IndexError, match="out of range"):
        array.take([50])
