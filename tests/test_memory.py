"""A training stage's memory is bounded by its batches, not by the data set: on an image folder 8×
larger its peak resident memory grows by less than a float32 copy of the added images would take
(4 bytes per stored byte; kd before streaming grew by about 21). What growth there is comes from
batches that the smaller folder does not fill. Measured in subprocesses, as DVC runs them."""

import os
import subprocess
import sys

import numpy as np
import yaml

from conftest import ROOT

SIZE = 96
TINY_CNN = [
    {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "strides": 4, "activation": "relu"}},
    {"class_name": "GlobalAveragePooling2D"},
]


def image_project(folder, count):
    """A kd project: ``count`` smooth RGB JPEGs in 4 class folders under sources/, one tiny conv model."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % 4
        (folder / "sources" / "images" / f"c{label}").mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        Image.fromarray(small).resize((SIZE, SIZE), Image.BILINEAR).save(
            folder / "sources" / "images" / f"c{label}" / f"{index:05d}.jpg", quality=90)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="sources/images", images={"size": [SIZE, SIZE], "color_mode": "rgb"})
    params["architectures"]["tiny_cnn"] = TINY_CNN
    params["train"] = {"tiny": {"architecture": "tiny_cnn", "epochs": 1, "batch_size": 64}}
    params["distill"], params["export"]["models"] = {}, []
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def peak_rss(script, *arguments, cwd):
    """Run a stage script; return its maximum resident set size in bytes."""
    process = subprocess.Popen([sys.executable, str(ROOT / "stages" / script), *arguments], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, output[-3000:]
    return usage.ru_maxrss * 1024


def test_a_training_stage_peaks_at_the_same_memory_on_eight_times_the_images(tmp_path):
    peaks = {}
    for count in (300, 2400):
        folder = image_project(tmp_path / str(count), count)
        peak_rss("prepare.py", cwd=folder)
        peaks[count] = peak_rss("train.py", "tiny", cwd=folder)
    # Training and validation images added, as stored (uint8); the old path held ~21 bytes per byte.
    added = (2400 - 300) * 0.8 * SIZE * SIZE * 3
    growth = peaks[2400] - peaks[300]
    assert growth < 3 * added, (f"peak RSS grew by {growth / 2**20:.0f} MB from 300 to 2,400 images "
                            f"({added / 2**20:.0f} MB of images added): memory follows the data")
