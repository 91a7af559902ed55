"""GridSearchCV across workers with joblib's Dask backend on a local dask.distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skfer import TransferCNNClassifier

distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")


def test_grid_search_under_the_dask_backend(tiny_params):
    import joblib

    rng = np.random.default_rng(0)
    y = np.arange(48) % 2
    X = rng.integers(0, 120, (48, 12, 12)).astype(np.uint8)
    X[y == 1, :6] += 120
    search = GridSearchCV(
        TransferCNNClassifier(**tiny_params), {"head": [(4,), (8,)]}, cv=2, n_jobs=2
    )
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
        tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes))
    assert tasks > 0  # the fits ran as Dask tasks
    assert len(search.cv_results_["params"]) == 2
    assert search.best_estimator_.predict(X).shape == (48,)
