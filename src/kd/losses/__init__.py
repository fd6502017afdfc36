"""The distillation objective: a weighted sum of named terms, declared in params.yaml.

A distilled model's loss per batch is

    loss = (1 − w) · CE(labels, student) + w · Σᵢ weightᵢ · termᵢ

``w`` is the model's ``soft_target_weight`` (the teacher's share, as in Hinton et al.),
and the terms come from its ``loss`` key: a kind (``hinton``), a kind with options
(``{kind: dkd, beta: 8}``), or a list of them, each with an optional ``weight``. The
default, ``hinton`` with weight 1, is Hinton et al.'s loss.

Each kind is declared in :mod:`kd.losses.kinds` (its options and their checks: what params
validation needs) and computed in :mod:`kd.losses.terms` (its formula, in ``keras.ops``);
:mod:`kd.losses.objective` combines a model's terms. The kinds:

- ``hinton``: T² · KL(softmax(t/T) ‖ softmax(s/T)), Hinton et al. (2015); with
  ``standardize: true``, logit standardization first (Sun et al., CVPR 2024).
- ``dkd``: Decoupled KD (Zhao et al., CVPR 2022): α · TCKD + β · NCKD, warmed up linearly
  over ``warmup_epochs``.
- ``dist``: DIST (Huang et al., 2022): β · inter-class + γ · intra-class Pearson relations.
- ``hint``: FitNets (Romero et al., 2015): MSE between a trainable regressor on a student
  layer and a teacher layer.
- ``attention``: attention transfer (Zagoruyko & Komodakis, 2017) between pairs of layers.
- ``rkd``: relational KD (Park et al., 2019): distance and angle relations between samples.

Logit kinds (``hinton``, ``dkd``, ``dist``) need only the teacher's logits, so they learn
from cached logits and from several teachers: each teacher's target distributions are
averaged with the teacher weights (an ensemble), or, with ``dense``, each teacher gives its
own term (DGKD). Feature kinds need the teacher's layers, so the teacher runs online.

A term's value and its parts become training curves (``train/soft_loss``: the teachers'
whole share; ``train/<kind>_<part>`` for terms with parts or objectives with several terms).

The mathematics is written in ``keras.ops``, so it runs on each of Keras's backends (TensorFlow,
JAX, PyTorch). This package imports nothing itself: validating params imports the kinds alone,
and only the stages that train with a loss depend on the maths.
"""
