"""Would a head on the face network's lower blocks be a member that errs elsewhere? A probe.

    python benchmarks/bench_lower_blocks.py RUN BLOCKS N_FIT
    python benchmarks/bench_lower_blocks.py runs/ferplus_v15 2,4,7 12000

For a ``skfer reproduce --preset cpu`` run (FER2013 or FER+; its split rebuilt from
``RUN/results.json`` as ``bench_members.py`` does), this computes the face-trained MobileNet's
(``mobilenet_vggface2``, 224 px) maps below its top ``BLOCKS`` blocks (comma-separated: 2 is
block 11's output, 4 block 9's, 7 block 6's) in one pass, pooled two ways: averaged over the
map (``avg``) and over each cell of a 2 x 2 grid (``grid``). A logistic regression on the
standardized features of ``N_FIT`` random fit-part images (no mirror images) is fitted per
feature set, its ``C`` chosen on the stopping part (each image averaged with its mirror, as the
preset's flip TTA does); its stacking-part and PublicTest probabilities then join the run's
members (``RUN/members.npz``) and ``reproduce``'s greedy forward selection runs over the base
models and these probes, from the run's best base model, with the preset's stacker for the
dataset (``bench_candidates.py``: 5-fold CV, mean over fold seeds 0-2). PublicTest is reported,
never used to choose. A cheap screen (minutes, no Keras head): the candidate that passes it is
trained as the preset trains a member with ``bench_candidates.py`` (``block9_grid``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_candidates import PRESET, greedy, label, public_row, stacking_cv  # noqa: E402
from bench_members import SHARED, best_base_member, load_members, run_splits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skfer import get_backbone  # noqa: E402
from skfer.layers import GridAveragePooling2D  # noqa: E402
from skfer.model import BACKBONE_LAYER, build_transfer_model  # noqa: E402

C_VALUES = (0.003, 0.01, 0.03, 0.1)
BATCH = 64
GRID = GridAveragePooling2D(2)


def pooled(feature_model, images, blocks) -> dict:
    """(block count, 'avg' or 'grid') to the pooled maps of ``images``."""
    parts = {(b, kind): [] for b in blocks for kind in ("avg", "grid")}
    for start in range(0, len(images), BATCH):
        maps = feature_model.predict_on_batch(images[start : start + BATCH])
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        for b, m in zip(blocks, maps, strict=True):
            m = np.asarray(m, dtype=np.float32)
            parts[b, "avg"].append(m.mean(axis=(1, 2)))
            parts[b, "grid"].append(keras.ops.convert_to_numpy(GRID(m)))
    return {key: np.concatenate(value) for key, value in parts.items()}


def main() -> None:
    run, blocks, n_fit = (
        Path(sys.argv[1]),
        [int(b) for b in sys.argv[2].split(",")],
        int(sys.argv[3]),
    )
    start = time.time()
    document, splits, names = run_splits(
        run, SHARED / "data/fer2013/fer2013.csv.gz", SHARED / "data/ferplus/fer2013new.csv"
    )
    members = load_members(run / "members.npz")
    kind = PRESET.stacker_for(document["dataset"])
    spec = get_backbone("mobilenet_vggface2")
    model = build_transfer_model(
        spec,
        channels=1,
        n_classes=len(names),
        input_size=224,
        weights=str(SHARED / "weights/hse_faceres_vggface2/faceres.json"),
        head=(32,),
    )
    wrapper = model.get_layer(BACKBONE_LAYER)
    backbone = wrapper.backbone
    outputs = [backbone.get_layer(spec.block_ends[-1 - k]).output for k in blocks]
    feature_model = keras.Model(model.input, keras.Model(backbone.input, outputs)(wrapper.input))
    rows = np.sort(
        np.random.default_rng(0).choice(len(splits.fit), min(n_fit, len(splits.fit)), replace=False)
    )
    test = splits.tests[0]
    sets = {
        "fit": (splits.fit.images[rows], splits.fit.target[rows]),
        "stop": (splits.stop.images, splits.stop.target),
        "stack": (splits.stack.images, splits.stack.target),
        "public": (test.images, test.target),
    }
    features = {}
    for name, (images, _) in sets.items():
        tick = time.time()
        for mirror in (False,) if name == "fit" else (False, True):
            features[name, mirror] = pooled(
                feature_model, images[:, :, ::-1] if mirror else images, blocks
            )
        print(f"{name}: {len(images)} images, {time.time() - tick:.0f} s", flush=True)
    y = {name: target for name, (_, target) in sets.items()}

    def both_views(head, name, key):
        return sum(head.predict_proba(features[name, m][key]) for m in (False, True)) / 2

    best = best_base_member(document, members)
    print("best member:", best, flush=True)
    for key in features["fit", False]:
        heads, stop = {}, {}
        for c in C_VALUES:
            head = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
            heads[c] = head.fit(features["fit", False][key], y["fit"])
            stop[c] = np.mean(both_views(heads[c], "stop", key).argmax(1) == y["stop"])
            print(f"  block-{13 - key[0]} {key[1]} C={c}: stop {stop[c]:.4f}", flush=True)
        chosen = max(stop, key=stop.get)
        name = f"block{13 - key[0]}_{key[1]}"
        members[name] = (
            both_views(heads[chosen], "stack", key),
            both_views(heads[chosen], "public", key),
        )
        print(
            f"{name}: C={chosen} stop {stop[chosen]:.4f} stack "
            f"{np.mean(members[name][0].argmax(1) == y['stack']):.4f} public "
            f"{np.mean(members[name][1].argmax(1) == y['public']):.4f}",
            flush=True,
        )
    base_names = [n for n in members if not n.startswith("expert")]
    print("members:", [n if n.startswith("block") else label(n) for n in base_names], flush=True)
    steps = greedy(
        base_names,
        best,
        lambda chosen: stacking_cv([members[n][0] for n in chosen], y["stack"], kind),
    )
    print("greedy:", [(n if n.startswith("block") else label(n), round(v, 4)) for n, v in steps])
    print("public:", public_row(members, [n for n, _ in steps], y["stack"], y["public"], kind))
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
