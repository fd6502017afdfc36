"""Where a distilled model's teachers come from: one place, chosen from its loss and augmentation.

- *cached*: each teacher's logits on the training split (``logits/<teacher>.npy``), written
  once by the teacher's own stage and read from disk row for row with each batch of images
  (:mod:`kd.batches`), so a distillation step costs what a plain step costs. Valid when the student sees exactly the images the
  logits were computed on (no augmentation) and its loss needs nothing but logits.
- *online*: the teacher models (``models/<teacher>.keras``) run on every batch, after the
  augmentation, in inference mode and outside the gradient tape, as feature extractors that
  return the logits and the layers the loss names.
- *views*: a student on views (``distill_views:``) reads the teacher's cached outputs on the
  very views its batches show (``logits/views/<name>/``, :mod:`kd.views`): augmented inputs,
  consistent teaching, and a plain step's cost.

:func:`load_teachers` picks the form from the model's spec and says which and why.
"""

from pathlib import Path

import numpy as np

from kd.errors import ArtifactError
from kd.inspection import feature_layers, layer_shapes, outputs_of


class Teachers:
    """The teachers of one distilled model, in the order of ``spec.distillation.teachers``.

    ``logits`` (cached) or ``models`` (online) is given. Call it inside the train step:
    ``teachers(x, cached)`` gives one ``{"logits": ..., <layer>: ...}`` per teacher, where
    ``cached`` are the dataset's teacher-logit columns of the batch.
    """

    def __init__(self, names, logits=None, models=None, views=None, reason=""):
        if sum(source is not None for source in (logits, models, views)) != 1:
            raise ValueError("give the teachers' cached logits, their models or their views: one of them")
        self.names = tuple(names)
        self.logits = logits
        self.models = models
        self.views = views
        self.reason = reason

    @property
    def online(self):
        return self.models is not None

    @property
    def dataset_columns(self):
        """Arrays to shuffle and batch beside the labels: the cached logits, row for row."""
        return tuple(self.logits) if self.logits is not None else ()

    def layer_shapes(self, names):
        """``{layer: output shape}`` of the nearest teacher's named layers (model or cached views)."""
        if self.views is not None:
            return {name: (None,) + tuple(self.views.features[name].row_shape) for name in names}
        return layer_shapes(self.models[0], names)

    def __call__(self, x, cached):
        import keras

        if self.views is not None:  # the teacher's outputs on the batch's views, read with it
            return [dict(cached[0])]
        if self.models is None:
            return [{"logits": logits} for logits in cached]
        return [{name: keras.ops.stop_gradient(value) for name, value in outputs_of(model, x, training=False).items()}
                for model in self.models]


def load_teachers(spec, models_dir, logits_dir, num_train, num_classes, train=None, seed=0):
    """The :class:`Teachers` of distilled model ``spec``, cached, online or on views, with the reason.

    Online teachers are loaded as Keras models; call this inside
    :func:`kd.devices.training_scope` so their variables live where training runs. A student
    on views needs the ``train`` split (its views are checked against it) and its ``seed``.
    """
    from kd.artifacts import load_model
    from kd.rows import NpyRows

    distillation = spec.distillation
    names = [name for name, _ in distillation.teachers]
    if spec.views is not None:
        from kd.views import Views

        views = Views(spec.views, Path(logits_dir) / "views" / spec.views.name, train, seed,
                      Path(models_dir) / f"{spec.views.teacher}.keras")
        mixed = f", mixed up with α={spec.views.mixup}" if spec.views.mixup is not None else ""
        return Teachers(names, views=views, reason=f"its cached outputs on views {spec.views.name!r} "
                                                   f"({spec.views.count} per image{mixed})")
    feature_terms = [term.name for term, _ in distillation.loss if term.features]
    if not spec.augmentation and not feature_terms:
        logits = []
        for name in names:
            rows = NpyRows(Path(logits_dir) / f"{name}.npy", f"logits of teacher {name!r}",
                           "run the stage that writes it")
            if rows.shape != (num_train, num_classes) or rows.dtype != np.float32:
                raise ArtifactError(
                    f"logits of teacher {name!r} have shape {rows.shape} ({rows.dtype}); expected "
                    f"{(num_train, num_classes)} (float32; one row per training image, one column per class). "
                    "Were they computed on another version of data/train/? Rerun its stage."
                )
            logits.append(rows)
        return Teachers(names, logits=logits, reason="its cached logits")

    why = []
    if spec.augmentation:
        why.append("it runs on every augmented batch")
    if feature_terms:
        why.append(f"the {'/'.join(dict.fromkeys(feature_terms))} term reads its layers")
    models = []
    for position, name in enumerate(names):
        teacher = load_model(Path(models_dir) / f"{name}.keras", f"teacher {name!r}")
        teacher.trainable = False
        layers = feature_layers(teacher, _teacher_layers(distillation) if position == 0 else (),
                                f"distill.{spec.name}.loss", f"teacher {name!r}")
        models.append(layers)
    return Teachers(names, models=models, reason=f"online ({'; '.join(why)})")


def _teacher_layers(distillation):
    return tuple(dict.fromkeys(n for term, _ in distillation.loss if term.features for n in term.teacher_layers))


def describe(distillation):
    """One line for the stage log: the teachers and the loss."""
    teachers = ", ".join(f"{name!r}" + (f" ×{weight:g}" if len(distillation.teachers) > 1 else "")
                         for name, weight in distillation.teachers)
    if len(distillation.teachers) > 1:
        teachers += " (DGKD" + (f", drop {distillation.drop}" if distillation.drop else "") + ")" \
            if distillation.dense else " (their average)"
    terms = " + ".join((f"{weight:g}·" if weight != 1 else "") + repr(term) for term, weight in distillation.loss)
    return (f"{teachers} (T={distillation.temperature}, soft_target_weight={distillation.soft_target_weight}, "
            f"loss {terms})")
