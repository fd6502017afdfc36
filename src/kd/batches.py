"""Batches of a prepared split, as every reader takes them: read from disk, converted per batch, prefetched.

The one data path of kd. Training (shuffled each epoch, seeded), validation each epoch, the
logits a training stage writes, evaluate's test metrics and export's representative images
all read :class:`kd.data.Split` rows a batch at a time (positioned reads of
``data/<split>/x.npy``, see :mod:`kd.rows`) and convert them to float32 inputs per batch,
beside the target columns (labels, teachers' cached logits, read the same way), row for row.
Memory is bounded by the batches in flight, whatever the size of the data set.

Under TensorFlow the batches come as a ``tf.data`` pipeline, the order of the training rows
being TensorFlow's seeded shuffle of the row indices, reshuffled each epoch
(``Dataset.range(n).shuffle(n, seed)``): what kd has always used, so models trained before
streaming came in are byte-identical to those trained now. Under ``multi_worker`` each worker
reads only its own share of each global batch. Under JAX and PyTorch they come as a
``keras.utils.PyDataset`` (:class:`PyBatches`, no TensorFlow), each epoch's order drawn by
NumPy from ``(seed, epoch)``; students on views use that order on every backend.
"""

import keras
import numpy as np

PREDICT_BATCH_SIZE = 1024  # images per batch where no gradients are kept: validation, logits, test sets
PREDICT_BATCH_BYTES = 16 << 20  # ... and at most this much float32 input per batch (large images)
PARALLEL_READS = 2  # batches read and converted at once
PREFETCH = 2  # batches ready ahead of the step


def training_batches(split, columns=(), *, batch_size, shuffle_seed=None, strategy=None, views=None, epochs=None):
    """``(x, targets)`` batches of ``split`` for Keras's ``fit``: a ``tf.data`` pipeline, or under a
    ``MultiWorkerMirroredStrategy`` a distributed one where each worker reads its own share.

    ``targets`` is the labels, or ``(labels, *columns)`` when ``columns`` (arrays or
    :class:`kd.rows.NpyRows` with one row per image, e.g. teachers' logits) are given.

    With ``views`` (:class:`kd.views.Views`), the batches of all ``epochs`` come as one stream
    (pass ``steps_per_epoch`` to ``fit``), each epoch shuffled with its own seed and each image
    shown as the view of that epoch: ``x`` is ``{"images": ..., <the view's transformation>}``
    and ``targets`` is ``(labels, {"logits": <the teacher's on the view>, <cached layers>})``.
    """
    if keras.backend.backend() != "tensorflow":
        return PyBatches(split, columns, batch_size=batch_size, shuffle_seed=shuffle_seed, views=views)
    import tensorflow as tf

    def pipeline(replica=0, replicas=1):
        if views is not None:
            return _views_pipeline(split, views, batch_size, shuffle_seed, epochs, replica, replicas)
        return _pipeline(split, columns, batch_size, shuffle_seed, replica, replicas)

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        def per_worker(context):
            return pipeline(context.input_pipeline_id, context.num_input_pipelines)

        return strategy.distribute_datasets_from_function(per_worker)
    return pipeline()


def epoch_order(count, seed, epoch):
    """The seeded permutation of ``count`` rows for ``epoch`` (views, and the backends other than TensorFlow)."""
    return np.random.default_rng([seed, int(epoch)]).permutation(count).astype(np.int64)


class PyBatches(keras.utils.PyDataset):
    """The batches of :func:`training_batches` as a ``PyDataset``, for JAX and PyTorch: the same rows
    read the same way, two batches read ahead by threads, each epoch in its own seeded order."""

    def __init__(self, split, columns=(), *, batch_size, shuffle_seed=None, views=None):
        super().__init__(workers=PARALLEL_READS, use_multiprocessing=False, max_queue_size=PREFETCH + PARALLEL_READS)
        self.split, self.columns, self.batch_size = split, tuple(columns), batch_size
        self.shuffle_seed, self.views = shuffle_seed, views
        self.epoch = 0
        self.order = self._order()

    def _order(self):
        if self.shuffle_seed is None:
            return np.arange(len(self.split))
        return epoch_order(len(self.split), self.shuffle_seed, self.epoch)

    def __len__(self):
        return -(-len(self.split) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x, labels = self.split.images[rows], self.split.y[rows]
        if self.views is not None:
            columns = self.views.columns(rows, self.epoch, self.split)
            teacher = {name[len("teacher_"):]: columns.pop(name) for name in list(columns) if name.startswith("teacher_")}
            return {"images": x, **columns}, (labels, teacher)
        if not self.columns:
            return x, labels
        return x, (labels, *(np.asarray(column[rows]) for column in self.columns))

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()


def _share(worker, workers):
    """This worker's rows of each global batch (the same shuffle runs on every worker)."""
    import tensorflow as tf

    def share(batch, *rest):
        size = tf.shape(batch, out_type=tf.int64)[0]
        return (batch[size * worker // workers:size * (worker + 1) // workers], *rest)

    return share


def _pipeline(split, columns, batch_size, shuffle_seed, worker, workers):
    import tensorflow as tf

    count = len(split)
    indices = tf.data.Dataset.range(count)
    if shuffle_seed is not None:
        indices = indices.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size)
    if workers > 1:
        indices = indices.map(_share(worker, workers))
    arrays = (split.y, *columns)
    dtypes = [tf.float32] + [tf.as_dtype(array.dtype) for array in arrays]

    def read(rows):
        return [split.images[rows]] + [np.asarray(array[rows]) for array in arrays]

    def gather(rows):
        x, *targets = tf.numpy_function(read, [rows], dtypes, stateful=False)
        x.set_shape((None,) + tuple(split.image_shape))
        for target, array in zip(targets, arrays, strict=True):
            target.set_shape((None,) + tuple(array.shape[1:]))
        return x, (targets[0] if len(targets) == 1 else tuple(targets))

    # A fixed number of batches in flight: tf.data's autotuned buffers grow with the epoch (they may
    # take up to half the machine's memory), which made a stage's memory follow the data set's size.
    return indices.map(gather, num_parallel_calls=PARALLEL_READS).prefetch(PREFETCH)


def _views_pipeline(split, views, batch_size, shuffle_seed, epochs, worker, workers):
    import tensorflow as tf

    count = len(split)

    def order(epoch):  # each epoch its own seeded permutation of the images
        return epoch_order(count, shuffle_seed, epoch)

    def epoch_batches(epoch):
        rows = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
        rows.set_shape((count,))
        return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size).map(lambda batch: (batch, epoch))

    indices = tf.data.Dataset.range(epochs).flat_map(epoch_batches)
    if workers > 1:
        indices = indices.map(_share(worker, workers))
    sample = views.columns(np.arange(min(2, count)), 0, split)
    names = sorted(sample)
    dtypes = [tf.float32, tf.int64] + [tf.as_dtype(sample[name].dtype) for name in names]

    def read(rows, epoch):
        columns = views.columns(rows, int(epoch), split)
        return [split.images[rows], split.y[rows]] + [columns[name] for name in names]

    def gather(rows, epoch):
        x, labels, *values = tf.numpy_function(read, [rows, epoch], dtypes, stateful=False)
        x.set_shape((None,) + tuple(split.image_shape))
        labels.set_shape((None,))
        for value, name in zip(values, names, strict=True):
            value.set_shape((None,) + sample[name].shape[1:])
        columns = dict(zip(names, values, strict=True))
        teacher = {name[len("teacher_"):]: columns.pop(name) for name in names if name.startswith("teacher_")}
        return {"images": x, **columns}, (labels, teacher)

    return indices.map(gather, num_parallel_calls=PARALLEL_READS).prefetch(PREFETCH)


def predict_batch_size(image_shape):
    """Images per inference batch: ``PREDICT_BATCH_SIZE``, fewer where that would exceed
    ``PREDICT_BATCH_BYTES`` of float32 input (1,024 MNIST images are 3 MB; 1,024 RGB images of
    224×224 would be 616 MB, several times over as they are read, converted and run)."""
    return max(1, min(PREDICT_BATCH_SIZE, PREDICT_BATCH_BYTES // (4 * int(np.prod(image_shape)))))


def predict_batches(model, images, batch_size=None):
    """The model's float32 logits on ``images`` (a split's :class:`kd.data.Images`, or an array), in
    order, one batch at a time, in inference mode; the next batch is read while the model runs."""
    from concurrent.futures import ThreadPoolExecutor

    batch_size = batch_size or predict_batch_size(images.shape[1:])
    count = len(images)
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(images.__getitem__, slice(0, batch_size)) if count else None
        for start in range(0, count, batch_size):
            x = pending.result()
            following = start + batch_size
            pending = reader.submit(images.__getitem__, slice(following, following + batch_size)) \
                if following < count else None
            yield np.asarray(model.predict_on_batch(x), dtype=np.float32)


def predict_logits(model, images, batch_size=None):
    """The model's float32 logits on every image of ``images``, as one array (a test set)."""
    blocks = list(predict_batches(model, images, batch_size))
    return np.concatenate(blocks) if blocks else np.zeros((0, model.outputs[0].shape[-1]), np.float32)


def write_logits(model, images, path):
    """Write the model's logits on ``images`` to ``path`` (``.npy``) as they are computed, atomically.

    The bytes are those of ``numpy.save`` of the whole array, which is never in memory.
    """
    from kd.artifacts import atomic_path
    from kd.rows import NpyWriter

    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        writer = NpyWriter(file, (len(images), model.outputs[0].shape[-1]), np.float32)
        for block in predict_batches(model, images):
            writer.write(block)
        writer.close()
