"""Pack what the GPU run needs into one folder under 64 MiB, and unpack it on the GPU machine.

    python benchmarks/gpu_bundle.py pack ../shared WHEELS_DIR .device     # here
    python benchmarks/gpu_bundle.py unpack .device /tmp/skfer-gpu          # on the GPU machine

The GPU machine gets only the working tree and carried folders (64 MiB in all) and has no
internet, no TensorFlow and no Keras. ``pack`` copies FER2013 in its compact form
(``../shared/gpu``) and xz-compresses the weight files, FER+'s ``fer2013new.csv`` and the Keras
wheel (the raw files would pass the limit by a few hundred KiB); the other wheels are copied as
they are. ``unpack`` writes ``fer2013.csv`` (Training + PublicTest rows, the Kaggle layout that
``load_fer2013`` reads) and ``fer2013new.csv`` (its FER+ votes, row for row), restores the
weight files, whose sha256 skfer checks when it loads them, and extracts the Keras wheel into
``site/`` (numpy and the standard library only).
"""

from __future__ import annotations

import argparse
import importlib.util
import lzma
import shutil
import sys
import tarfile
import time
import zipfile
from pathlib import Path

DATA_STEM = "fer2013_train_public"
WEIGHT_FILES = (
    "hse_faceres_vggface2/faceres.json",
    "hse_faceres_vggface2/faceres.bin",
    "mobilenet_v1_0.25_imagenet_notop/mobilenet_2_5_224_tf_no_top.h5",
)
USAGE_NAMES = ("Training", "PublicTest")
FERPLUS_FILE = "fer2013new.csv"


def pack(shared: Path, wheels: Path, bundle: Path) -> None:
    """Fill ``bundle`` from ``shared`` (the data and weights) and ``wheels`` (keras, optree,
    namex for CPython 3.12)."""
    bundle.mkdir(parents=True, exist_ok=True)
    for name in (f"{DATA_STEM}.u8delta.xz", f"{DATA_STEM}.labels.npz", "unpack_fer2013.py"):
        shutil.copyfile(shared / "gpu" / name, bundle / name)
    for relative in WEIGHT_FILES:
        target = bundle / "weights" / (relative + ".xz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lzma.compress((shared / "weights" / relative).read_bytes(), preset=9))
    ferplus = (shared / "data" / "ferplus" / FERPLUS_FILE).read_bytes()
    (bundle / f"{FERPLUS_FILE}.xz").write_bytes(lzma.compress(ferplus, preset=9))
    (bundle / "wheels").mkdir(exist_ok=True)
    for wheel in sorted(wheels.glob("*.whl")):
        if wheel.name.startswith("keras-"):
            with (
                zipfile.ZipFile(wheel) as archive,
                tarfile.open(bundle / "keras.tar.xz", "w:xz", preset=9) as tar,
            ):
                for member in archive.infolist():
                    info = tarfile.TarInfo(member.filename)
                    info.size = member.file_size
                    with archive.open(member) as handle:
                        tar.addfile(info, handle)
        else:
            shutil.copyfile(wheel, bundle / "wheels" / wheel.name)
    total = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    print(f"bundle {bundle}: {total / 2**20:.1f} MiB")


def unpack(bundle: Path, work: Path) -> None:
    """Write ``work/fer2013.csv``, ``work/fer2013new.csv``, ``work/weights/...`` and
    ``work/site/keras``."""
    start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.spec_from_file_location("unpack_fer2013", bundle / "unpack_fer2013.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images, emotion, usage = module.load(str(bundle / DATA_STEM))
    numbers = [str(value).encode() for value in range(256)]
    with open(work / "fer2013.csv", "wb") as handle:
        handle.write(b"emotion,pixels,Usage\n")
        for pixels, label, split in zip(
            images.reshape(len(images), -1), emotion, usage, strict=True
        ):
            if str(split) not in USAGE_NAMES:
                raise ValueError(f"unexpected Usage {split!r} in the bundle")
            row = b" ".join([numbers[value] for value in pixels.tolist()])
            handle.write(b"%d,%s,%s\n" % (label, row, str(split).encode()))
    ferplus = lzma.decompress((bundle / f"{FERPLUS_FILE}.xz").read_bytes())
    (work / FERPLUS_FILE).write_bytes(ferplus)
    for compressed in (bundle / "weights").rglob("*.xz"):
        target = work / "weights" / compressed.relative_to(bundle / "weights").with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lzma.decompress(compressed.read_bytes()))
    with tarfile.open(bundle / "keras.tar.xz") as tar:
        tar.extractall(work / "site", filter="data")
    print(f"unpacked {len(images)} images, weights and keras into {work} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("shared", type=Path)
    packing.add_argument("wheels", type=Path)
    packing.add_argument("bundle", type=Path)
    unpacking = commands.add_parser("unpack")
    unpacking.add_argument("bundle", type=Path)
    unpacking.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.shared, args.wheels, args.bundle)
    else:
        unpack(args.bundle, args.work)


if __name__ == "__main__":
    sys.exit(main())
