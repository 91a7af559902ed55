"""A bounded in-memory cache of frozen-backbone features, keyed so that it is never stale.

While the backbone is frozen and the input is not augmented, its pooled output does not change
between epochs, between the experts of :class:`~skfer.OneVsAllExperts`, or between the folds of
a search that fit the same backbone on the same images. The key is a digest of everything the
features depend on: the feature graph's configuration (backbone, input size, preprocessing,
pooling), the values of its weights, and the bytes, shape and dtype of the images.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

import keras
import numpy as np

from .backend import predict_in_full_batches

__all__ = ["FeatureCache", "feature_cache", "fingerprint"]


def fingerprint(*parts) -> str:
    """Hex digest of arrays (bytes, shape, dtype) and JSON-serialisable values."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(repr((part.shape, part.dtype.str)).encode())
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class FeatureCache:
    """Least-recently-used store of feature arrays, bounded by their total size in bytes.

    Parameters
    ----------
    max_bytes : int
        Entries are evicted, oldest use first, to keep the total at or below this; an array
        larger than the bound is computed but not stored.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(array.nbytes for array in self._entries.values())

    def clear(self) -> None:
        """Drop every entry and reset the hit and miss counters."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def features(
        self, feature_model: keras.Model, images: np.ndarray, *, graph: dict, batch_size: int
    ) -> np.ndarray:
        """``feature_model.predict(images)``, computed once per distinct model and data (by
        :func:`~skfer.backend.predict_in_full_batches`).

        Parameters
        ----------
        feature_model : keras.Model
            Maps images to features.
        images : ndarray
            The input batch.
        graph : dict
            What defines ``feature_model`` besides its weights (backbone name, input size,
            pooling...). Layer names are not part of the key: Keras numbers them per session.
        batch_size : int
            Prediction batch size.

        Returns
        -------
        ndarray
            Read-only: callers share it.
        """
        key = fingerprint(
            graph,
            *[np.asarray(w) for w in feature_model.get_weights()],
            images,
        )
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        features = predict_in_full_batches(feature_model, images, batch_size)
        features.setflags(write=False)
        if features.nbytes <= self.max_bytes:
            with self._lock:
                self._entries[key] = features
                while self.nbytes > self.max_bytes:
                    self._entries.popitem(last=False)
        return features


feature_cache = FeatureCache()
"""The process-wide cache used by :class:`~skfer.TransferCNNClassifier`."""
