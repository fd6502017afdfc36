"""The seeded train/validation split, the checks a source's values pass, and the split files on disk.

Values are checked before anything is written (:func:`checked_arrays`): pixels must be finite,
integer pixels must fit 8 bits (0..255), and the labels must be the classes ``0..K-1`` with every
class in the training split (``data.num_classes`` declares ``K`` when some classes are meant to be
absent).

The prepare stage writes ``data/<split>/`` for ``train``, ``validation`` and ``test``: ``x.npy``
(the images, uint8 pixels or float, as a plain ``.npy`` that can be memory-mapped), ``y.npy``
(int64 labels) and ``split.json`` (the count, image shape, classes and format version). It
writes ``WRITE_CHUNK_BYTES`` at a time, so memory is bounded by a block of images, not by the
data set; every reader (:class:`Split`) takes the images a batch at a time. The validation split
is carved from the training images with the seed; the test split is read only by the final
evaluation.
"""

import contextlib
import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd.artifacts import atomic_directory
from kd.errors import DataError
from kd.rows import NpyRows, NpyWriter

SPLIT_FORMAT = 1  # data/<split>/split.json's "format": raised when the layout changes
WRITE_CHUNK_BYTES = 64 << 20  # rows copied into a split file at a time


@dataclass(frozen=True)
class Dataset:
    """What a source holds: training and test images and labels, and the class names.

    ``x_train`` and ``x_test`` are arrays in memory (a packaged data set, a ``.npz``) or
    :class:`kd.rows.NpyRows` of decoded images on disk (an image folder): anything that gives
    rows for ``x[indices]``.
    """

    x_train: object
    y_train: np.ndarray
    x_test: object
    y_test: np.ndarray
    class_names: tuple = ()
    skipped: tuple = ()  # unreadable image files left out (data.images.skip_unreadable)


@dataclass(frozen=True)
class PlannedSplit:
    """The rows of a source that make one split, before it is written."""

    rows: object  # x_train or x_test of a Dataset
    indices: np.ndarray  # which rows, in order
    y: np.ndarray
    num_classes: int
    class_names: tuple

    def __len__(self):
        return len(self.indices)

    @property
    def image_shape(self):
        return tuple(self.rows.shape[1:])


@dataclass(frozen=True)
class Split:
    """One prepared split (``data/<split>/``): its images on disk, read in pieces; its labels in memory.

    ``pixels`` are the images as stored (uint8, or float for float sources); :attr:`images`
    gives them as the models take them, one batch at a time.
    """

    pixels: NpyRows
    y: np.ndarray
    num_classes: int
    class_names: tuple = ()

    def __len__(self):
        return len(self.y)

    @property
    def image_shape(self):
        return self.pixels.row_shape

    @property
    def images(self):
        return Images(self.pixels)


class Images:
    """A split's images as the models take them: ``images[rows]`` (a slice or indices) reads those
    rows and returns them as float32, uint8 pixels scaled to [0, 1]; ``len`` and ``shape`` as an array's."""

    def __init__(self, pixels):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    @property
    def shape(self):
        return (len(self.pixels),) + tuple(self.pixels.row_shape)

    def __getitem__(self, rows):
        return as_inputs(self.pixels[rows])


def as_inputs(pixels):
    """Images as the models take them: float32, uint8 pixels scaled to [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    return pixels.astype(np.float32)


def split(dataset, validation_fraction, limit, seed, num_classes=None):
    """Carve a seeded validation split from the (first ``limit``) training images of ``dataset``.

    Returns ``{"train", "validation", "test"}`` :class:`PlannedSplit` (:func:`write_splits`
    writes them). The classes are ``0..num_classes-1``; without ``num_classes``, every class
    from 0 to the largest label must have a training example (a stray label would otherwise
    silently make a wider output layer).
    """
    y_train, y_test = dataset.y_train, dataset.y_test
    if limit is not None:
        y_train = y_train[:limit]
    num_classes = _classes(y_train, y_test, num_classes)
    count = len(y_train)
    n_validation = int(round(count * validation_fraction))
    if not 1 <= n_validation < count:
        raise DataError(
            f"data.validation_fraction {validation_fraction} of {count} training images leaves "
            f"{n_validation} for validation and {count - n_validation} for training; both must be >= 1"
        )
    order = np.random.default_rng(seed).permutation(count)
    validation, train = np.sort(order[:n_validation]), np.sort(order[n_validation:])
    names = tuple(dataset.class_names) or tuple(str(c) for c in range(num_classes))
    if len(names) != num_classes:
        names = tuple(str(c) for c in range(num_classes))
    test = np.arange(len(y_test))
    return {
        "train": PlannedSplit(dataset.x_train, train, y_train[train], num_classes, names),
        "validation": PlannedSplit(dataset.x_train, validation, y_train[validation], num_classes, names),
        "test": PlannedSplit(dataset.x_test, test, y_test, num_classes, names),
    }


def _classes(y_train, y_test, declared):
    """The number of classes, checked against the labels (see :func:`split`)."""
    largest = int(max(y_train.max(), y_test.max()))
    if declared is not None:
        if largest >= declared:
            split_name, labels = ("train", y_train) if y_train.max() >= declared else ("test", y_test)
            index = int(np.argmax(labels >= declared))
            raise DataError(f"data.num_classes is {declared} but the {split_name} split holds label {int(labels[index])} "
                            f"(e.g. image {index}); expected labels 0..{declared - 1}")
        return declared
    present = np.zeros(largest + 1, bool)
    present[np.unique(y_train)] = True
    absent = np.flatnonzero(~present)
    if absent.size:
        shown = ", ".join(map(str, absent[:10])) + (f" and {absent.size - 10} more" if absent.size > 10 else "")
        where = ("train", int(np.argmax(y_train))) if y_train.max() == largest else ("test", int(np.argmax(y_test)))
        raise DataError(
            f"the train split has no example of class(es) {shown} of 0..{largest} ({absent.size} of {largest + 1}; "
            f"the largest label, {largest}, is image {where[1]} of the {where[0]} split); expected every class to "
            "appear. If the gaps are intended, declare the class count with data.num_classes"
        )
    return largest + 1


def write_splits(splits, folder):
    """Write each planned split to ``folder/<split>/`` (``x.npy``, ``y.npy``, ``split.json``), all or nothing.

    Rows are copied ``WRITE_CHUNK_BYTES`` at a time, so a split never has to be in memory. Each
    split is written to a temporary folder and renamed into place once all of them are complete;
    a failure (a full disk included) leaves the previous splits as they were.
    """
    folder = Path(folder)
    needed = sum(len(part) * _row_bytes(part.rows) for part in splits.values())
    with contextlib.ExitStack() as stack:
        written = {}
        try:
            for name, part in splits.items():
                temporary = stack.enter_context(atomic_directory(folder / name))
                _write_split(part, temporary)
                written[name] = temporary
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise DataError(f"{folder}/ ran out of disk space while writing the splits: they need "
                                f"{_gigabytes(needed)}, {_gigabytes(shutil.disk_usage(folder).free)} free now; "
                                "nothing was written") from None
            raise


def save_split(folder, x, y, num_classes, class_names=()):
    """Write arrays ``x`` (images) and ``y`` (labels) as the split ``folder`` and open it (tests, tools)."""
    folder = Path(folder)
    names = tuple(class_names) or tuple(str(c) for c in range(num_classes))
    part = PlannedSplit(np.asarray(x), np.arange(len(y)), np.asarray(y, np.int64), num_classes, names)
    write_splits({folder.name: part}, folder.parent)
    return load_split(folder)


def _write_split(part, folder):
    row_bytes = _row_bytes(part.rows)
    dtype = part.rows.dtype
    folder.mkdir(parents=True)
    with open(folder / "x.npy", "wb") as file:
        writer = NpyWriter(file, (len(part),) + part.image_shape, dtype)
        step = max(1, WRITE_CHUNK_BYTES // max(row_bytes, 1))
        for start in range(0, len(part), step):
            writer.write(part.rows[part.indices[start:start + step]])
        writer.close()
    with open(folder / "y.npy", "wb") as file:
        np.lib.format.write_array(file, part.y.astype(np.int64), allow_pickle=False)
    description = {"format": SPLIT_FORMAT, "images": len(part), "image_shape": list(part.image_shape),
                   "dtype": np.dtype(dtype).name, "num_classes": int(part.num_classes),
                   "class_names": list(part.class_names)}
    (folder / "split.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")


def check_free_space(folder, needed, doing, key=None, error=DataError):
    """Refuse up front work that will write ``needed`` bytes under ``folder`` when its disk has less free.

    ``doing`` says what needs them; ``key``, the params key to name first (``views.vj.count``). The
    folder need not exist yet: its nearest existing parent's disk is the one asked.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise error((f"{key}: " if key else "") + f"{folder}/ has {_gigabytes(free)} free; {doing} needs "
                    f"{_gigabytes(needed)}; nothing was written")


def _row_bytes(rows):
    return int(np.prod(rows.shape[1:], dtype=np.int64)) * np.dtype(rows.dtype).itemsize


def _gigabytes(count):
    if count >= 1e12:
        return f"{count / 1e12:,.1f} TB"
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def load_split(folder):
    """Open a split written by :func:`write_splits`: the images stay on disk, the labels are read."""
    folder = Path(folder)
    rerun = "rerun the prepare stage (dvc repro prepare)"
    if not folder.is_dir():
        older = folder.with_name(f"{folder.name}.npz")
        if older.is_file():
            raise DataError(f"{older} is a split in the format of an older kd (one .npz read whole); {rerun}, "
                            f"which writes {folder}/")
        raise DataError(f"{folder}/ is missing; {rerun}")
    try:
        description = json.loads((folder / "split.json").read_text())
        if description.get("format") != SPLIT_FORMAT:
            raise ValueError(f"format {description.get('format')!r}, expected {SPLIT_FORMAT}")
        labels = np.load(folder / "y.npy", allow_pickle=False)
    except (OSError, ValueError, AttributeError) as error:
        raise DataError(f"{folder}/ is not a split kd can read ({error}); {rerun}") from None
    pixels = NpyRows(folder / "x.npy", "split images", rerun)
    count = description.get("images")
    if len(pixels) != len(labels) or len(labels) != count or list(pixels.row_shape) != description["image_shape"]:
        raise DataError(f"{folder}/ holds {len(pixels)} images of shape {pixels.row_shape} and {len(labels)} labels "
                        f"but split.json says {count} of {tuple(description['image_shape'])}: damaged; {rerun}")
    return Split(pixels, labels.astype(np.int64, copy=False), int(description["num_classes"]),
                 tuple(description["class_names"]))


def checked_arrays(source, x_train, y_train, x_test, y_test):
    """Check shapes, lengths and labels; give images a channel axis; labels as int64."""
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for split_name in ("train", "test"):
        x, y = arrays[f"x_{split_name}"], arrays[f"y_{split_name}"]
        if x.ndim not in (3, 4):
            raise DataError(
                f"{source}: x_{split_name} has shape {x.shape}; expected images (N, H, W) or (N, H, W, C)"
            )
        if y.ndim != 1:
            raise DataError(f"{source}: y_{split_name} has shape {y.shape}; expected one label per image (N,)")
        if len(x) != len(y):
            raise DataError(f"{source}: x_{split_name} has {len(x)} images but y_{split_name} has {len(y)} labels")
        if len(y) == 0:
            raise DataError(f"{source}: the {split_name} split is empty")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"{source}: x_{split_name} has dtype {x.dtype}; expected numbers")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{split_name} has dtype {y.dtype}; expected integer class labels")
    x_train, x_test = (x[..., None] if x.ndim == 3 else x for x in (x_train, x_test))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{source}: training images have shape {x_train.shape[1:]} but test images {x_test.shape[1:]}"
        )
    if y_train.min() < 0 or y_test.min() < 0:
        raise DataError(f"{source}: labels must be >= 0; found {min(y_train.min(), y_test.min())}")
    if y_test.max() > y_train.max():
        raise DataError(
            f"{source}: y_test holds label {y_test.max()}, outside the training labels 0..{y_train.max()}"
        )
    for split_name, x in (("train", x_train), ("test", x_test)):
        _check_pixels(source, split_name, x)
    integer = np.issubdtype(x_train.dtype, np.integer) and np.issubdtype(x_test.dtype, np.integer)
    if integer:  # 8-bit values (checked above) in any integer type: stored, and scaled, as uint8 pixels
        x_train, x_test = x_train.astype(np.uint8, copy=False), x_test.astype(np.uint8, copy=False)
    else:
        x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def _check_pixels(source, split_name, x):
    """Finite pixels; integer pixels in 0..255 (they are scaled by 1/255 as 8-bit images are)."""
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            bad_images = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
            raise DataError(
                f"{source}: x_{split_name} holds {int((~finite).sum())} non-finite pixel value(s) (NaN or inf) in "
                f"{bad_images.size} image(s), e.g. image {int(bad_images[0])}; expected finite numbers"
            )
    elif x.dtype != np.uint8 and x.size and (x.min() < 0 or x.max() > 255):
        bad_images = np.flatnonzero(((x < 0) | (x > 255)).reshape(len(x), -1).any(axis=1))
        raise DataError(
            f"{source}: x_{split_name} has {x.dtype} pixels from {x.min()} to {x.max()} ({bad_images.size} image(s) "
            f"outside 0..255, e.g. image {int(bad_images[0])}); expected 8-bit values 0..255, or floats"
        )
