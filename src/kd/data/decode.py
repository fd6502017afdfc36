"""A folder of class folders decoded to uint8 images, in parallel and as it goes.

The layout is the one ``keras.utils.image_dataset_from_directory`` reads: one subfolder of images
per class, or ``train/`` and ``test/`` subfolders laid out so. The files are decoded once, in
sorted order, resized to ``data.images.size`` in ``data.images.color_mode`` and written to raw
uint8 files, so the data set is never in memory at once. Without ``test/``, a seeded
``data.images.test_fraction`` of each class is the test split. A 16-bit PNG gives its high byte,
a CMYK JPEG its RGB (or gray) conversion (:func:`_decode`).
"""

import re
from pathlib import Path

import numpy as np

from kd.console import Progress
from kd.data.splits import Dataset, check_free_space
from kd.errors import DataError
from kd.rows import NpyRows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DECODE_BATCH = 256  # images decoded (in parallel) per block written


def read_image_folder(source, spec, seed, work):
    """Decode the folder of class folders ``source`` (optionally under ``train/`` and ``test/``) to uint8
    files in ``work``; return the :class:`~kd.data.splits.Dataset` of its decoded rows (uint8 by construction)."""
    if work is None:
        raise ValueError("an image folder is decoded to files: give folder_for_decoding")
    folder, images, work = Path(source), spec.images, Path(work)
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
