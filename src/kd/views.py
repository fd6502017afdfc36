"""Views: a teacher's outputs on seeded augmented versions of every training image, computed once.

Consistent teaching (Beyer et al., CVPR 2022) has the teacher judge the very augmented image
the student sees. Run online, that costs a teacher forward pass in every step of every student;
views pay it once. A ``views:`` entry names a teacher, an augmentation and a ``count`` K, and
optionally ``mixup: α`` (function matching: each view mixed with a seeded partner image, the
coefficient drawn from Beta(α, α)). Stage ``views@<name>`` (:func:`compute_views`) treats the
training split as N·K rows, row ``i·K + v`` being view ``v`` of image ``i``, and writes to
``logits/views/<name>/``, row for row:

- ``logits.npy``: the teacher's logits on the view; ``features/<layer>.npy`` for the teacher
  layers the entry's ``layers`` lists (for feature terms);
- ``transformations/<layer>.<key>.npy``: the random transformation each augmentation layer drew
  for the view (a translation, a flip, ...), as Keras's preprocessing layers represent it
  (``get_random_transformation``), so the view can be rebuilt exactly (``transform_images``);
- with mixup, ``partner.npy`` (the partner image), ``mix.npy`` (the image's coefficient
  λ = max(a, 1 − a), a ~ Beta(α, α): the image keeps the larger share, as in big_vision's
  mixup, drawn per view where theirs is drawn per batch) and ``partner_transformations/``;
- ``views.json``: what they were computed from (teacher file, data, settings).

A student on views (``distill_views:``) sees each image once per epoch as one of its views
(:class:`Views`: in epoch e, view ``(o_i + e) mod K`` with ``o_i`` drawn from the student's
seed, so no view repeats within K epochs), rebuilt in its step from the stored transformation:
the same image the teacher saw, beside the teacher's cached outputs on it, at a plain step's
cost. An augmentation qualifies when each layer's output is a function of its drawn per-image
transformation alone (:func:`check_stateless`); others stay on the online path.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from kd.errors import ArtifactError, ParamsError
from kd.models import augmentation_layers, check_stateless, per_image

VIEWS_FORMAT = 1


# ---------------------------------------------------------------------------------------------- computing


def compute_views(views, teacher, train, folder, seed, teacher_file):
    """Write the views of ``teacher`` on ``train`` (a :class:`kd.data.Split`) to ``folder``.

    Rows are processed in order, a block at a time: each block's transformations, partners and
    coefficients are drawn with generators seeded from ``seed`` in that order, so the same
    params give the same files on every machine.
    """
    import keras

    from kd.batches import predict_batch_size
    from kd.console import Progress
    from kd.rows import NpyWriter
    from kd.inspection import feature_layers, predicted_outputs

    layers = augmentation_layers(views, train.image_shape, seed)
    check_stateless(layers, train.image_shape, f"views.{views.name}.augmentation ({views.augmentation_name})")
    extractor = feature_layers(teacher, views.layers, f"views.{views.name}.layers", f"teacher {views.teacher!r}")
    count, rows = views.count, len(train) * views.count
    generator = keras.random.SeedGenerator(seed)
    partner_generator = keras.random.SeedGenerator(seed + 1)
    rng = np.random.default_rng([seed, views.count])  # partners and coefficients
    block = predict_batch_size(train.image_shape)
    files, writers = {}, {}

    def write(name, values):
        values = np.asarray(values)
        if name not in writers:
            path = folder / f"{name}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            files[name] = open(path, "wb")
            writers[name] = NpyWriter(files[name], (rows,) + values.shape[1:], values.dtype)
        writers[name].write(values)

    progress = Progress(f"views@{views.name}: computed", rows, "views")
    try:
        for start in range(0, rows, block):
            images_of = np.arange(start, min(start + block, rows)) // count
            x = train.images[images_of]
            x = _transform(layers, x, generator, "transformations", write)
            if views.mixup is not None:
                partners = rng.integers(0, len(train), len(images_of))
                # The image keeps the larger share, as big_vision's mixup sorts its coefficients.
                draws = rng.beta(views.mixup, views.mixup, len(images_of))
                lam = np.maximum(draws, 1.0 - draws).astype(np.float32)
                mixed = _transform(layers, train.images[partners], partner_generator, "partner_transformations", write)
                x = mix(x, mixed, lam)
                write("partner", partners.astype(np.int64))
                write("mix", lam)
            outputs = predicted_outputs(extractor, x)
            write("logits", np.asarray(outputs["logits"], np.float32))
            for layer in views.layers:
                write(f"features/{layer}", np.asarray(outputs[layer], np.float32))
            progress.update(start + len(images_of))
        for writer in writers.values():
            writer.close()
    finally:
        for file in files.values():
            file.close()
    description = {"format": VIEWS_FORMAT, "views": views.name, "teacher": views.teacher, "count": count,
                   "images": len(train), "augmentation": list(views.augmentation), "mixup": views.mixup,
                   "layers": list(views.layers), "seed": seed, "teacher_md5": file_md5(teacher_file),
                   "data": data_fingerprint(train)}
    (folder / "views.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")


def view_bytes(views, image_shape, num_classes, layer_shapes=None):
    """What one view takes in the views' folder: the teacher's logits and ``layer_shapes``' layers
    (float32), each augmentation layer's drawn transformation and, with mixup, the partner's index,
    the coefficient and the partner's transformations."""
    import keras

    per_view = 4 * int(num_classes) + sum(4 * int(np.prod(shape)) for shape in (layer_shapes or {}).values())
    images = np.zeros((2,) + tuple(image_shape), np.float32)
    generator = keras.random.SeedGenerator(0)
    transformations = 0
    for layer in augmentation_layers(views, image_shape, seed=0):
        drawn = per_image(layer.get_random_transformation(images, training=True, seed=generator), len(images))
        transformations += sum(keras.ops.convert_to_numpy(value).nbytes // len(images) for value in (drawn or {}).values())
    per_view += transformations
    if views.mixup is not None:
        per_view += np.dtype(np.int64).itemsize + np.dtype(np.float32).itemsize + transformations
    return per_view


def check_cache_fits(views, train, folder, teacher=None):
    """Refuse views whose folder will not fit on its disk, before any work (ParamsError naming the count).

    ``train``: the training split (or the one prepare plans); ``teacher``: the Keras model, whose cached
    layers count too (without it, the layers are left out: the size checked is then a lower bound).
    """
    from kd.data import check_free_space

    known = {layer.name for layer in teacher.layers} if teacher is not None else set()
    shapes = {name: teacher.get_layer(name).output.shape[1:] for name in views.layers if name in known}
    per_view = view_bytes(views, train.image_shape, train.num_classes, shapes)
    check_free_space(folder, len(train) * views.count * per_view,
                     f"caching {views.count:,} views of each of {len(train):,} training images ({per_view:,} bytes "
                     "a view)", key=f"views.{views.name}.count", error=ParamsError)


def check_every_cache_fits(params, train, folder):
    """:func:`check_cache_fits` for every ``views:`` entry, their folders under ``folder`` (prepare's check).
    A teacher kd trains is built to size its cached layers; a teacher file's are left out."""
    from kd.models import build_model

    for views in (params.views or {}).values():
        spec = params.model(views.teacher)
        teacher = None
        if views.layers and spec.pretrained is None:
            teacher = build_model(spec, train.image_shape, train.num_classes)
        check_cache_fits(views, train, Path(folder) / views.name, teacher)


def _transform(layers, x, generator, prefix, write):
    """Draw each layer's transformation for the batch ``x``, store its per-image entries, apply it."""
    import keras

    for position, layer in enumerate(layers):
        transformation = layer.get_random_transformation(x, training=True, seed=generator)
        for key, value in sorted(per_image(transformation, len(x)).items()):
            write(f"{prefix}/{position}.{key}", keras.ops.convert_to_numpy(value))
        x = keras.ops.convert_to_numpy(layer.transform_images(x, transformation, training=True))
    return x


def mix(images, partners, lam):
    """λ · images + (1 − λ) · partners, λ per image."""
    import keras

    shape = (-1,) + (1,) * (len(images.shape) - 1)
    lam = keras.ops.reshape(keras.ops.cast(lam, images.dtype), shape)
    return lam * images + (1.0 - lam) * partners


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(split):
    """A cheap fingerprint of a training split: its labels, shape and 64 images spread over it."""
    digest = hashlib.md5(np.ascontiguousarray(split.y).tobytes())
    digest.update(repr((len(split), split.image_shape, split.pixels.dtype.str)).encode())
    digest.update(split.pixels[np.linspace(0, len(split) - 1, 64).astype(np.int64)].tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- reading


class Views:
    """The stored views of one ``views:`` entry, as a student reads them.

    Checks on opening that they were computed from this teacher file and this data split (a
    stale folder is refused, naming it). :meth:`columns` gives, for images of a batch and an
    epoch, the rows of their views (``i·K + v``) and what the batch needs of them.
    """

    def __init__(self, views, folder, train, seed, teacher_file):
        from kd.rows import NpyRows

        self.spec, self.folder = views, Path(folder)
        rerun = f"rerun its stage (dvc repro {views.stage})"
        try:
            description = json.loads((self.folder / "views.json").read_text())
        except FileNotFoundError:
            raise ArtifactError(f"views {self.folder}/ are missing; {rerun}") from None
        except (OSError, ValueError) as error:
            raise ArtifactError(f"views {self.folder}/views.json cannot be read ({error}); {rerun}") from None
        settings = {"format": VIEWS_FORMAT, "count": views.count, "images": len(train), "mixup": views.mixup,
                    "augmentation": list(views.augmentation), "layers": list(views.layers)}
        changed = [key for key, value in settings.items() if description.get(key) != value]
        if changed:
            raise ArtifactError(f"views {self.folder}/ were computed with another {', '.join(changed)} than "
                                f"params.yaml's views.{views.name} gives; {rerun}")
        if description.get("teacher_md5") != file_md5(teacher_file):
            raise ArtifactError(f"views {self.folder}/ were computed from another version of {teacher_file}; {rerun}")
        if description.get("data") != data_fingerprint(train):
            raise ArtifactError(f"views {self.folder}/ were computed on another version of the training split; {rerun}")
        self.count = views.count
        rows = len(train) * views.count

        def open_rows(name):
            array = NpyRows(self.folder / f"{name}.npy", f"views {views.name!r}", rerun)
            if len(array) != rows:
                raise ArtifactError(f"views {self.folder}/{name}.npy holds {len(array)} rows, expected {rows}; {rerun}")
            return array

        self.logits = open_rows("logits")
        self.features = {layer: open_rows(f"features/{layer}") for layer in views.layers}
        self.transformations = self._stored(open_rows, "transformations")
        self.mixup = views.mixup is not None
        if self.mixup:
            self.partner, self.mix = open_rows("partner"), open_rows("mix")
            self.partner_transformations = self._stored(open_rows, "partner_transformations")
        # Which view of each image an epoch shows: (offset + epoch) mod K, offsets from the student's seed.
        self.offsets = np.random.default_rng(seed).integers(0, views.count, len(train))

    def _stored(self, open_rows, prefix):
        """``{(layer position, key): rows}`` of the stored transformations."""
        stored = {}
        for path in sorted((self.folder / prefix).glob("*.npy")) if (self.folder / prefix).is_dir() else ():
            position, key = path.stem.split(".", 1)
            stored[(int(position), key)] = open_rows(f"{prefix}/{path.stem}")
        return stored

    def rows(self, images, epoch):
        return images * self.count + (self.offsets[images] + epoch) % self.count

    def columns(self, images, epoch, split):
        """``{name: array}`` for a batch of image indices in ``epoch``: the view inputs and teacher outputs."""
        rows = self.rows(images, epoch)
        columns = {"teacher_logits": self.logits[rows]}
        columns.update({f"teacher_{layer}": array[rows] for layer, array in self.features.items()})
        columns.update({f"t{position}.{key}": array[rows] for (position, key), array in self.transformations.items()})
        if self.mixup:
            partners = self.partner[rows]
            columns.update(partner_images=split.images[partners], partner_labels=split.y[partners],
                           mix=self.mix[rows])
            columns.update({f"p{position}.{key}": array[rows]
                            for (position, key), array in self.partner_transformations.items()})
        return columns


class ViewInputs:
    """Rebuilds, in the train step, the views the teacher saw: the stored transformations applied to
    the batch's images with the same Keras layers (and, with mixup, to the partners, then mixed)."""

    def __init__(self, views, input_shape, seed):
        import keras

        self.layers = augmentation_layers(views, input_shape, seed)
        self.mixup = views.mixup is not None
        self.generator = keras.random.SeedGenerator(seed)  # created here, under the training strategy

    def __call__(self, columns, images):
        """``(images, mixing)``: the views, and ``(partner_labels, λ)`` with mixup (else None)."""
        x = self._apply(images, columns, "t")
        if not self.mixup:
            return x, None
        partners = self._apply(columns["partner_images"], columns, "p")
        return mix(x, partners, columns["mix"]), (columns["partner_labels"], columns["mix"])

    def _apply(self, x, columns, prefix):
        for position, layer in enumerate(self.layers):
            # The layer's own draw gives the transformation's structure (and any per-batch entries);
            # the per-image entries are the stored ones.
            transformation = layer.get_random_transformation(x, training=True, seed=self.generator)
            stored = {key[len(f"{prefix}{position}."):]: value for key, value in columns.items()
                      if key.startswith(f"{prefix}{position}.")}
            x = layer.transform_images(x, {**transformation, **stored}, training=True)
        return x
