"""The streaming data path: a split on disk gives exactly the batches its seed says, in pieces;
split and logits files are byte-stable and refused when damaged or from an older kd."""

import io

import numpy as np
import pytest
import tensorflow as tf

from kd.batches import PREDICT_BATCH_SIZE, predict_logits, training_batches, write_logits
from kd.data import load_split, save_split
from kd.errors import ArtifactError, DataError
from kd.rows import NpyRows, NpyWriter


def pixels_and_labels(count=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 5, 4, 1), dtype=np.uint8), rng.integers(0, 3, count)


def in_memory_reference(x, targets, batch_size, seed, epochs):
    """kd's batches before streaming: the float32 images as one tensor, gathered per shuffled batch."""
    tensors = [tf.constant(x.astype(np.float32) / 255.0)] + [tf.constant(t) for t in targets]
    indices = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    dataset = indices.map(lambda index: tuple(tf.gather(t, index) for t in tensors))
    return [[tuple(part.numpy() for part in batch) for batch in dataset] for _ in range(epochs)]


def test_a_split_on_disk_gives_exactly_the_seeded_batches_of_the_in_memory_path(tmp_path):
    x, y = pixels_and_labels()
    logits = np.random.default_rng(1).normal(size=(100, 3)).astype(np.float32)
    split = save_split(tmp_path / "train", x, y, 3)
    with open(tmp_path / "logits.npy", "wb") as file:
        np.save(file, logits)
    column = NpyRows(tmp_path / "logits.npy")
    tf.random.set_seed(0)
    streamed = training_batches(split, [column], batch_size=16, shuffle_seed=7)
    epochs = [[(xb.numpy(), labels.numpy(), cached.numpy()) for xb, (labels, cached) in streamed] for _ in range(3)]
    tf.random.set_seed(0)
    expected = in_memory_reference(x, [y, logits], 16, 7, 3)
    for got_epoch, expected_epoch in zip(epochs, expected, strict=True):
        assert len(got_epoch) == 7 and len(got_epoch[-1][1]) == 100 - 6 * 16
        for got, want in zip(got_epoch, expected_epoch, strict=True):
            for got_part, want_part in zip(got, want, strict=True):
                assert got_part.dtype == want_part.dtype
                np.testing.assert_array_equal(got_part, want_part)
    # Every row once per epoch, a new order each epoch, and the labels travel with their images.
    orders = [np.concatenate([batch[2] for batch in epoch]) for epoch in epochs]
    for order in orders:
        assert sorted(map(tuple, order)) == sorted(map(tuple, logits))
    assert not np.array_equal(orders[0], orders[1])
    rows = [np.flatnonzero((logits == row).all(1))[0] for row in np.concatenate([b[2] for b in epochs[0]])]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in epochs[0]]), y[rows])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in epochs[0]]), x[rows].astype(np.float32) / 255.0)


def test_each_worker_reads_only_its_share_of_each_global_batch(tmp_path):
    from kd.batches import _pipeline

    x, y = pixels_and_labels(50)
    split = save_split(tmp_path / "train", x, y, 3)
    whole = [labels.numpy() for _, labels in _pipeline(split, (), 16, 3, 0, 1)]
    shares = [[labels.numpy() for _, labels in _pipeline(split, (), 16, 3, worker, 2)] for worker in range(2)]
    for batch, first, second in zip(whole, *shares, strict=True):
        assert len(first) == len(batch) // 2 and len(first) + len(second) == len(batch)
        np.testing.assert_array_equal(np.concatenate([first, second]), batch)


def test_rows_are_read_by_slice_or_in_any_order(tmp_path):
    array = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert rows.shape == (20, 3) and len(rows) == 20
    np.testing.assert_array_equal(rows[5:9], array[5:9])
    np.testing.assert_array_equal(rows[[7, 2, 19, 2]], array[[7, 2, 19, 2]])
    np.testing.assert_array_equal(rows[np.arange(3, 8)], array[3:8])
    assert rows[18:40].shape == (2, 3) and rows[np.array([], np.int64)].shape == (0, 3)
    with pytest.raises(IndexError):
        rows[[20]]


def test_written_in_pieces_the_bytes_are_those_of_numpy_save(tmp_path):
    array = np.random.default_rng(0).normal(size=(1000, 10)).astype(np.float32)
    whole, pieces = io.BytesIO(), io.BytesIO()
    np.save(whole, array)
    writer = NpyWriter(pieces, array.shape, np.float32)
    for start in range(0, 1000, 300):
        writer.write(array[start:start + 300])
    writer.close()
    assert pieces.getvalue() == whole.getvalue()
    with pytest.raises(ValueError, match="999 rows written of 1000"):
        short = NpyWriter(io.BytesIO(), array.shape, np.float32)
        short.write(array[:999])
        short.close()


def test_logits_are_written_as_they_are_predicted_with_the_bytes_of_the_whole_array(tmp_path):
    import keras

    x, y = pixels_and_labels(PREDICT_BATCH_SIZE + 37)
    split = save_split(tmp_path / "train", x, y, 3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    write_logits(model, split.images, tmp_path / "logits.npy")
    expected = model.predict(x.astype(np.float32) / 255.0, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    with io.BytesIO() as buffer:
        np.save(buffer, expected.astype(np.float32))
        assert (tmp_path / "logits.npy").read_bytes() == buffer.getvalue()
    np.testing.assert_array_equal(predict_logits(model, split.images), expected)


def test_a_truncated_or_older_split_is_refused_naming_the_file_and_the_fix(tmp_path):
    x, y = pixels_and_labels()
    save_split(tmp_path / "train", x, y, 3)
    path = tmp_path / "train" / "x.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ArtifactError, match=r"train/x.npy holds .* bytes but its header promises .*truncated or "
                                            r"damaged; rerun the prepare stage"):
        load_split(tmp_path / "train")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "validation.npz").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"old/validation.npz is a split in the format of an older kd .*rerun the "
                                        r"prepare stage \(dvc repro prepare\)"):
        load_split(tmp_path / "old" / "validation")
    with pytest.raises(DataError, match=r"nowhere/ is missing; rerun the prepare stage"):
        load_split(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match=r"logits of teacher 'ta' .*not an .npy array"):
        (tmp_path / "junk.npy").write_bytes(b"not numpy")
        NpyRows(tmp_path / "junk.npy", "logits of teacher 'ta'")


def test_a_full_disk_leaves_no_split_and_says_how_much_is_needed(tmp_path, monkeypatch):
    import errno

    import kd.data.splits

    x, y = pixels_and_labels()
    save_split(tmp_path / "train", x, y, 3)
    before = (tmp_path / "train" / "x.npy").read_bytes()

    def full(part, folder):
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kd.data.splits, "_write_split", full)
    with pytest.raises(DataError, match=r"ran out of disk space while writing the splits: they need .* free now; "
                                        r"nothing was written"):
        save_split(tmp_path / "train", x[:50], y[:50], 3)
    assert (tmp_path / "train" / "x.npy").read_bytes() == before  # the previous split, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no temporary folder left
