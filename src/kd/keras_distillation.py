"""kd's label-free logit terms as Keras's own distillation losses, for ``keras.distillation.Distiller``.

Keras 3's ``Distiller(teacher=..., student=..., distillation_losses=...)`` hands each of its
losses the teacher's and the student's final outputs and nothing else: no labels. kd's logit
terms that need none fit that interface as they are:

- :class:`HintonLoss`: T² · KL(softmax(t/T) ‖ softmax(s/T)), Hinton et al. (2015); kd's ``hinton``.
- :class:`StandardizedHintonLoss`: the same on z-scored logits (Sun et al., CVPR 2024); kd's
  ``{kind: hinton, standardize: true}``.
- :class:`DistLoss`: DIST (Huang et al., 2022), β · inter-class + γ · intra-class relations; kd's ``dist``.

DKD needs the labels (it separates the target class), so it has no place here: use
:class:`kd.losses.terms.DecoupledKD` in a model's own ``compute_loss`` (docs/python.md shows how).

The mathematics stays in :mod:`kd.losses.terms` (each class holds one of its terms, validated when
constructed), so a term computes the same here as in a kd pipeline. Outputs must be logits:
a teacher or student whose last layer applies a softmax is refused.

Keras's own ``LogitsDistillation(temperature=T)`` with its default ``loss="kl_divergence"``
is not Hinton's loss: the string resolves to the plain ``kl_divergence`` function, which is
applied to the scaled logits themselves, not to their softmax. ``LogitsDistillation(
temperature=T, loss=keras.losses.KLDivergence())`` is: it takes the softmax of both, the
batch mean of KL and multiplies by T², as :class:`HintonLoss` does, and agrees with it to
float32 rounding as long as every probability is at least 1e-7, where Keras's KL clips them
(tests/test_python_api.py).
"""

import keras

from kd.errors import ParamsError
from kd.losses.terms import Dist, Hinton


class LogitLoss(keras.distillation.DistillationLoss):
    """One of kd's logit terms on the models' final outputs, ``(batch, classes)`` logits each.

    Subclasses name their ``term_class`` and pass its options, which are checked here: a
    bad value raises ValueError naming the argument, as Keras's own losses do.
    """

    term_class = None
    arguments = ()  # the constructor's, as get_config gives them back

    def __init__(self, **options):
        name = type(self).__name__
        try:
            self.term = self.term_class(options, name)
            self.term._positive("temperature")  # a term in params.yaml may leave it to its model; here none can
        except ParamsError as error:
            raise ValueError(str(error)) from None

    def get_config(self):
        return {key: self.term.config[key] for key in self.arguments}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        targets = self.term.teacher_targets(teacher_outputs, None)
        value, _ = self.term.value(targets, student_outputs, None)
        return value

    def validate_outputs(self, teacher_outputs, student_outputs):
        name = type(self).__name__
        shapes = []
        for role, outputs in (("teacher", teacher_outputs), ("student", student_outputs)):
            if keras.tree.is_nested(outputs) or len(outputs.shape) != 2:
                raise ValueError(f"{name}: the {role}'s output must be one tensor of logits, (batch, classes); "
                                 f"found {keras.tree.map_structure(lambda x: tuple(x.shape), outputs)}")
            shapes.append(tuple(outputs.shape))
        if None not in (shapes[0][-1], shapes[1][-1]) and shapes[0][-1] != shapes[1][-1]:
            raise ValueError(f"{name}: the teacher gives {shapes[0][-1]} classes and the student {shapes[1][-1]}; "
                             "their logits are compared class for class")

    def validate_model_compatibility(self, teacher, student):
        for role, model in (("teacher", teacher), ("student", student)):
            if _ends_in_softmax(model):
                raise ValueError(f"{type(self).__name__}: the {role} {model.name!r} ends in a softmax, but kd's terms "
                                 "take logits; build it without the final activation")


def _ends_in_softmax(model):
    """Whether a Sequential or functional model's last layer applies a softmax (subclassed ones can't be told)."""
    if not getattr(model, "outputs", None) or len(model.outputs) != 1 or not model.layers:
        return False
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", None) == "softmax"


@keras.saving.register_keras_serializable(package="kd")
class HintonLoss(LogitLoss):
    """Hinton et al.'s soft targets: T² · mean over the batch of KL(softmax(t/T) ‖ softmax(s/T))."""

    term_class = Hinton
    arguments = ("temperature",)

    def __init__(self, temperature=4.0):
        super().__init__(temperature=temperature, standardize=False)


@keras.saving.register_keras_serializable(package="kd")
class StandardizedHintonLoss(LogitLoss):
    """Hinton's loss on logits z-scored per sample first (logit standardization, Sun et al., CVPR 2024):
    the student matches the shape of the teacher's logits, not their scale."""

    term_class = Hinton
    arguments = ("temperature",)

    def __init__(self, temperature=4.0):
        super().__init__(temperature=temperature, standardize=True)


@keras.saving.register_keras_serializable(package="kd")
class DistLoss(LogitLoss):
    """DIST: β · (1 − Pearson correlation per sample) + γ · (1 − Pearson correlation per class) of
    softmax(z/τ), each × τ². The batch must hold more than one sample for the per-class relation."""

    term_class = Dist
    arguments = ("temperature", "beta", "gamma")

    def __init__(self, temperature=4.0, beta=1.0, gamma=1.0):
        super().__init__(temperature=temperature, beta=beta, gamma=gamma)
