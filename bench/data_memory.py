"""Benchmark: memory and throughput of kd's data path at its users' sizes.

For each size (N synthetic RGB JPEGs of S×S pixels in 10 class folders, generated in a
temporary folder outside the repository), runs kd's prepare stage and then one epoch of a
training stage of a small conv model (batch 64), each as `dvc repro` runs it, in its own
process, and prints per size:

- prepare: images decoded per second (prepare's own count, imports excluded), its wall time
  and its peak resident memory (the process's maximum RSS, from ``wait4``);
- train: ms per step (the epoch line), its wall time and peak resident memory;

then prepare's decode rate on one core (``taskset -c 0``) against all cores, on the first size.

    python bench/data_memory.py [--sizes 5000x128 20000x128 80000x128 23000x224] [--keep DIR] [--record FILE]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

from kd.profiling import machine  # noqa: E402

CLASSES = 10
SMALL_CNN = [
    {"class_name": "Conv2D", "config": {"filters": 8, "kernel_size": 3, "strides": 4, "activation": "relu"}},
    {"class_name": "Conv2D", "config": {"filters": 16, "kernel_size": 3, "strides": 2, "activation": "relu"}},
    {"class_name": "GlobalAveragePooling2D"},
]


def write_image(args):
    """One random JPEG with a photo's texture (so it decodes about as slowly as a photo), tinted by its
    class (so the model has something to learn)."""
    path, label, size, seed = args
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
    small[..., label % 3] = 0.5 * small[..., label % 3] + 12 * label
    smooth = np.asarray(Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR))
    textured = smooth + rng.normal(0, 24, smooth.shape)
    Image.fromarray(np.clip(textured, 0, 255).astype(np.uint8)).save(path, quality=90)


def image_folder(root, count, size):
    """``root/images_<size>/<class>/<i>.jpg`` holding ``count`` images (made once per size, grown as needed)."""
    folder = root / f"images_{size}"
    todo = []
    for index in range(count):
        label = index % CLASSES
        path = folder / f"c{label}" / f"{index:06d}.jpg"
        if not path.exists():
            todo.append((path, label, size, index))
    for label in range(CLASSES):
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(write_image, todo, chunksize=256))
    return folder


def project(root, images, count, size):
    """A kd project folder whose sources/images holds the first ``count`` images (hard links)."""
    folder = root / f"project_{count}x{size}"
    shutil.rmtree(folder, ignore_errors=True)
    for label in range(CLASSES):
        target = folder / "sources" / "images" / f"c{label}"
        target.mkdir(parents=True)
        for index in range(label, count, CLASSES):
            os.link(images / f"c{label}" / f"{index:06d}.jpg", target / f"{index:06d}.jpg")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="sources/images", validation_fraction=0.1,
                          images={"size": [size, size], "color_mode": "rgb", "test_fraction": 0.1})
    params["architectures"]["small_cnn"] = SMALL_CNN
    params["train"] = {"small": {"architecture": "small_cnn", "epochs": 1, "batch_size": 64}}
    params["distill"] = {}
    params["export"]["models"] = []
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run_measured(command, cwd, log):
    """Run ``command`` in ``cwd``; return (wall seconds, peak RSS in bytes, its output)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    output = Path(log).read_text()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({process.returncode}):\n{output[-3000:]}")
    return wall, usage.ru_maxrss * 1024, output


def prepare(folder, cores=None):
    command = [sys.executable, str(ROOT / "stages" / "prepare.py")]
    if cores is not None:
        command = ["taskset", "-c", cores] + command
    shutil.rmtree(folder / "data", ignore_errors=True)
    wall, peak, output = run_measured(command, folder, folder / "prepare.log")
    rate = float(re.search(r"decoded [\d,]+ images in [\d.]+ s \(([\d,]+)/s\)", output).group(1).replace(",", ""))
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20), "images_per_s": rate}


def train(folder):
    wall, peak, output = run_measured([sys.executable, str(ROOT / "stages" / "train.py"), "small"], folder,
                                      folder / "train.log")
    ms = float(re.findall(r"- (\d+)ms/step", output)[-1])
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20), "ms_per_step": ms}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["5000x128", "20000x128", "80000x128", "23000x224"],
                        help="COUNTxPIXELS per run")
    parser.add_argument("--keep", help="a folder for the images and projects, kept afterwards (default: temporary)")
    parser.add_argument("--record", type=Path, help="also write the rows, commit and machine to this JSON file")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kd-bench-data-"))
    root.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; scratch folder {root}", flush=True)
    rows = []
    try:
        for count, size in sizes:
            images = image_folder(root, max(c for c, s in sizes if s == size), size)
            folder = project(root, images, count, size)
            stored = count * size * size * 3
            row = {"images": count, "pixels": size, "stored_mb": round(stored / 2**20),
                   "prepare": prepare(folder), "train": train(folder)}
            if not rows:
                row["prepare_one_core"] = prepare(folder, cores="0")
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(folder)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n| images | size | stored (uint8) | prepare images/s | prepare peak RSS | train ms/step | "
          "train peak RSS |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['images']:,} | {row['pixels']}×{row['pixels']} | {row['stored_mb']:,} MB | "
              f"{row['prepare']['images_per_s']:,.0f} | {row['prepare']['peak_rss_mb']:,} MB | "
              f"{row['train']['ms_per_step']:.0f} | {row['train']['peak_rss_mb']:,} MB |")
    first = rows[0]
    if "prepare_one_core" in first:
        speedup = first["prepare"]["images_per_s"] / first["prepare_one_core"]["images_per_s"]
        print(f"\nprepare on {info['cores']} cores vs 1 ({first['images']:,} images of {first['pixels']} px): "
              f"{first['prepare']['images_per_s']:,.0f} vs {first['prepare_one_core']['images_per_s']:,.0f} "
              f"images/s, {speedup:.2f}×")
    if args.record:
        from kd.artifacts import write_json
        from kd.records import record

        write_json(args.record, record({"rows": rows}, started, root=ROOT, code=("bench", "src")))


if __name__ == "__main__":
    main()
