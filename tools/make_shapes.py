"""Make a small image data set of shapes in class folders, a stand-in for cats vs dogs.

kd reads a folder with one subfolder of images per class (the layout
``keras.utils.image_dataset_from_directory`` reads), optionally split into ``train/`` and
``test/``. No real image data set can be downloaded here, so this script draws one: RGB
images of a ``circle``, a ``square`` or a ``triangle`` on a plain or gradient background,
at a random position, size, rotation and colour, with thin occluding lines and Gaussian
noise, so that a small convolutional network learns it well but not trivially. Half the
files are PNG, half JPEG (quality 90), as in a folder of photos collected from the web.

The output is deterministic: each image is drawn from its own seed (``--seed``, class,
index) and encoded by TensorFlow, so the same arguments give byte-identical files.

    python tools/make_shapes.py                              # sources/shapes/{circle,square,triangle}/
    python tools/make_shapes.py --split --test-fraction 0.2  # sources/shapes/{train,test}/<class>/
    python tools/make_shapes.py --out /tmp/shapes --per-class 100 --size 32 --seed 1
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

CLASSES = ("circle", "square", "triangle")
SUPERSAMPLE = 4  # shapes and lines are drawn on a 4x finer grid and averaged: anti-aliased edges


def colour(rng):
    return rng.uniform(0, 255, 3)


def contrasting(rng, background, min_distance=150):
    """A colour at least ``min_distance`` (RGB Euclidean) from ``background``'s mean colour."""
    mean = background.reshape(-1, 3).mean(axis=0)
    while True:
        c = colour(rng)
        if np.linalg.norm(c - mean) >= min_distance:
            return c


def background(rng, size):
    """A plain colour, or a linear gradient between two colours at a random angle."""
    if rng.random() < 0.4:
        return np.broadcast_to(colour(rng), (size, size, 3)).copy()
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    angle = rng.uniform(0, 2 * np.pi)
    t = x * np.cos(angle) + y * np.sin(angle)
    t = ((t - t.min()) / (t.max() - t.min()))[..., None]
    return (1 - t) * colour(rng) + t * colour(rng)


def shape_mask(kind, rng, grid):
    """Coverage of a random ``kind`` shape at the points ``grid`` = (x, y), in pixels."""
    x, y = grid
    size = x.shape[0] // SUPERSAMPLE
    r = rng.uniform(0.25, 0.4) * size  # circumradius-like scale
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    aspect = rng.uniform(0.9, 1.0)  # a slightly squashed circle, a slightly oblong square
    if kind == "circle":
        scale = r * 0.9
        inside = lambda s: (u / s) ** 2 + (v / (s * aspect)) ** 2 <= 1  # noqa: E731
    elif kind == "square":
        scale = r * 0.8
        inside = lambda s: (np.abs(u) <= s) & (np.abs(v) <= s * aspect)  # noqa: E731
    else:  # an equilateral triangle: inside the half-planes of its three edges
        scale = r * 1.1
        normals = [np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]
        inside = lambda s: np.all([u * np.cos(a) + v * np.sin(a) <= s / 2 for a in normals], axis=0)  # noqa: E731
    mask = inside(scale)
    if rng.random() < 0.1:  # an outline instead of a filled shape
        mask &= ~inside(scale - rng.uniform(0.08, 0.15) * size)
    return mask


def lines_mask(rng, grid, count):
    """Coverage of ``count`` straight line segments of random ends and widths."""
    x, y = grid
    size = x.shape[0] // SUPERSAMPLE
    mask = np.zeros(x.shape, bool)
    for _ in range(count):
        (x0, y0), (x1, y1) = rng.uniform(-0.1, 1.1, (2, 2)) * size
        width = rng.uniform(0.6, 2.0) * size / 64
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
        mask |= np.hypot(x - x0 - t * dx, y - y0 - t * dy) <= width / 2
    return mask


def downsample(mask, size):
    return mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))[..., None]


def draw(kind, seed, size):
    """One ``size`` x ``size`` RGB uint8 image of ``kind``, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    fine = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    grid = np.meshgrid(fine, fine)  # (x, y) at the sub-pixel centres
    image = background(rng, size)
    cover = downsample(shape_mask(kind, rng, grid), size)
    image = (1 - cover) * image + cover * contrasting(rng, image)
    for _ in range(rng.integers(0, 2)):  # occluding lines, each its own colour
        cover = downsample(lines_mask(rng, grid, 1), size)
        image = (1 - cover) * image + cover * colour(rng)
    image += rng.normal(0, rng.uniform(0, 8), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="sources/shapes", type=Path)
    parser.add_argument("--per-class", type=int, default=600, help="images per class (default 600)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", action="store_true", help="write train/ and test/ subfolders")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="with --split (default 0.2)")
    parser.add_argument("--force", action="store_true", help="delete --out first if it is not empty")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        if not args.force:
            sys.exit(f"make_shapes: {args.out} is not empty; pass --force to replace it")
        shutil.rmtree(args.out)
    start = time.perf_counter()
    n_test = round(args.per_class * args.test_fraction) if args.split else 0
    for label, kind in enumerate(CLASSES):
        for i in range(args.per_class):
            split = ("test" if i >= args.per_class - n_test else "train") if args.split else ""
            folder = args.out / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            image = draw(kind, (args.seed, label, i), args.size)
            if i % 2:
                data, ext = tf.io.encode_jpeg(image, quality=90), "jpg"
            else:
                data, ext = tf.io.encode_png(image), "png"
            (folder / f"{kind}_{i:05d}.{ext}").write_bytes(data.numpy())
    total = args.per_class * len(CLASSES)
    splits = f", {n_test} per class in test/" if args.split else ""
    print(
        f"make_shapes: {total} images ({len(CLASSES)} classes x {args.per_class}{splits}; "
        f"{args.size}x{args.size} RGB; PNG and JPEG) in {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
