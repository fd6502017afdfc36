"""The loss maths, in ``keras.ops``: the one file a formula edit touches.

Functions of tensors first (each checked against a NumPy translation of the authors' code in
tests/test_loss_kinds.py), then each kind's formula: the subclass, of the same name, of its
declaration in :mod:`kd.losses.kinds`, adding what the kind computes. Only the stages of models
that learn with a loss (distill@, distill_views@, mutual@) import this module. The maths runs on
each of Keras's backends (TensorFlow, JAX, PyTorch); Keras is imported inside the functions, so
importing the module stays cheap.
"""

import math

import numpy as np

from kd.losses import kinds
from kd.losses.labels import add_all

FORMULAS = {}  # kind name -> the subclass of its declaration that computes it
NEGATIVE_LARGE = 1000.0  # subtracted from the target class's scaled logit to remove it (DKD's NCKD)
# Added under a square root whose argument can be exactly 0: float32 sums of squares above 1e-37
# are unchanged by it, and sqrt's gradient at 0 becomes finite (1e-15), not infinite.
TINY = 1e-30


def formula(cls):
    """Register a kind's formula under its kind's ``name``."""
    FORMULAS[cls.name] = cls
    return cls


def with_formula(term):
    """``term`` (a declaration from params) as the object that computes it."""
    if isinstance(term, Formula):
        return term
    computed = FORMULAS[term.name](term.config, term.where)
    computed.inherited = term.inherited
    return computed


# ----------------------------------------------------------------------------------------------
# The mathematics, as functions of tensors.


def stateless_uniform(count, seed, step):
    """``count`` uniform draws in [0, 1) that depend only on ``(seed, step)``, on every backend.

    On TensorFlow, TensorFlow's stateless op (the draws every DGKD run recorded so far was made
    with); elsewhere the backend's counter-based generator keyed the same way.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform([count], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]))
    if backend == "jax":
        import jax

        return jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(seed), step), (count,))
    import torch

    generator = torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + int(step))
    return torch.rand(count, generator=generator).to(keras.ops.convert_to_tensor(0.0).device)


def standardize(logits):
    """Each row z-scored: (z − mean) / (1e-7 + unbiased std), as Sun et al.'s code does."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    mean = ops.mean(logits, axis=-1, keepdims=True)
    count = float(logits.shape[-1])  # the classes: static
    variance = ops.sum(ops.square(logits - mean), axis=-1, keepdims=True) / (count - 1.0)
    return (logits - mean) / (1e-7 + ops.sqrt(variance))


def kl_from_log_probs(target_log_probs, log_probs):
    """Mean over the batch of KL(p ‖ q), both given as log-probabilities."""
    from keras import ops

    kl = ops.sum(ops.exp(target_log_probs) * (target_log_probs - log_probs), axis=-1)
    return ops.mean(kl)


def target_and_rest(log_probs, others_log_probs, target_mask):
    """Log-probabilities of DKD's two bins, [target class, all other classes], without a log of 0.

    The rest bin is log Σ_{j≠t} p_j = logsumexp(z_{j≠t}) − logsumexp(z), which equals
    ``log_probs[j] − others_log_probs[j]`` for every class j but the target; their mean weighted by
    the non-target distribution (the target's weight is 0) gives it without a second logsumexp.
    """
    from keras import ops

    target = ops.sum(log_probs * target_mask, axis=-1, keepdims=True)
    rest = ops.sum(ops.exp(others_log_probs) * (log_probs - others_log_probs), axis=-1, keepdims=True)
    return ops.concatenate([target, rest], axis=-1)


def batch_share(tensor):
    """1 / the size of ``tensor``'s first axis (the batch, known only when the step runs), in float32."""
    from keras import ops

    return 1.0 / ops.cast(ops.shape(tensor)[0], "float32")


# DKD's and DIST's gradients are written out beside their values, as TensorFlow's fused cross-entropy
# op does for the hard labels: differentiated op by op through their log-softmaxes, bins, reductions
# and divisions, a keras.io-pair step held 10 (DKD) and 20 (DIST) more ops, and on a small student
# each op's scheduling, not its arithmetic, is what the step pays for (docs/speed.md: What a
# distillation step costs). tests/test_loss_kinds.py checks each part's gradient against central
# differences of the authors' code in float64.


def decoupled_kl(targets, scaled, mask, temperature):
    """``[TCKD, NCKD]``, each × T² and averaged over the batch: DKD's two KL divergences.

    ``targets``: the teacher's ``(bins, others)`` log-probabilities; ``scaled``: the student's logits / T;
    ``mask``: the labels one-hot. With p the student's probabilities, p̂ its distribution over the
    classes but the target (0 at the target), b the teacher's [target, rest] bins and q its
    distribution over the classes but the target, a sample's gradients w.r.t. ``scaled`` are
    ∂TCKD/∂s = p − b_target·mask − b_rest·p̂ and ∂NCKD/∂s = p̂ − q (b and q each sum to 1).
    """
    from keras import ops

    teacher_bins, teacher_others = targets
    bins_probs, others_probs = ops.exp(teacher_bins), ops.exp(teacher_others)
    squared = temperature**2

    @ops.custom_gradient
    def both(scaled):
        log_probs = ops.log_softmax(scaled, axis=-1)
        others = ops.log_softmax(scaled - NEGATIVE_LARGE * mask, axis=-1)
        bins = target_and_rest(log_probs, others, mask)
        share = squared * batch_share(scaled)
        value = share * ops.stack([ops.sum(bins_probs * (teacher_bins - bins)),
                                   ops.sum(others_probs * (teacher_others - others))])
        rest_probs = ops.exp(others)  # p̂
        tckd_grad = ops.exp(log_probs) - bins_probs[:, :1] * mask - bins_probs[:, 1:] * rest_probs
        nckd_grad = rest_probs - others_probs

        def grad(*args, upstream=None):  # (upstream) on TensorFlow and JAX; (*inputs, upstream=) on PyTorch
            upstream = args[0] if upstream is None else upstream
            return share * (upstream[0] * tckd_grad + upstream[1] * nckd_grad)

        return value, grad

    return both(scaled)


def dist_relations(teacher, student, temperature):
    """``[inter, intra]``: DIST's relations, τ² · (1 − mean Pearson correlation), per sample and per class.

    ``teacher`` and ``student``: probabilities. Pearson's r = a·b / (√(|a|²|b|² + TINY) + 1e-8) of the
    centred vectors a (student) and b (teacher), eps 1e-8 as the authors'; its gradient w.r.t. a is
    (b − r·|b|²·a / √(|a|²|b|² + TINY)) / (√(…) + 1e-8). Rows of probabilities have mean 1 / classes, so the
    per-sample relation centres by that constant; the per-class relation by the batch mean, through
    which its gradient passes unchanged (a gradient built of centred columns has column means 0).
    """
    from keras import ops

    classes = float(teacher.shape[-1])
    squared = temperature**2
    teacher_rows = teacher - 1.0 / classes
    teacher_columns = teacher - ops.mean(teacher, axis=0, keepdims=True)
    rows_norm = ops.sum(ops.square(teacher_rows), axis=1, keepdims=True)
    columns_norm = ops.sum(ops.square(teacher_columns), axis=0, keepdims=True)

    def pearson(a, b, b_norm, axis):  # (mean of r along the other axis, dr/da)
        root = ops.sqrt(ops.sum(ops.square(a), axis=axis, keepdims=True) * b_norm + TINY)
        denominator = root + 1e-8
        r = ops.sum(a * b, axis=axis, keepdims=True) / denominator
        return ops.mean(r), (b - (r * b_norm / root) * a) / denominator

    @ops.custom_gradient
    def both(student):
        inter, inter_grad = pearson(student - 1.0 / classes, teacher_rows, rows_norm, 1)
        intra, intra_grad = pearson(student - ops.mean(student, axis=0, keepdims=True), teacher_columns,
                                    columns_norm, 0)
        inter_grad = (-squared * batch_share(student)) * inter_grad
        intra_grad = (-squared / classes) * intra_grad

        def grad(*args, upstream=None):  # (upstream) on TensorFlow and JAX; (*inputs, upstream=) on PyTorch
            upstream = args[0] if upstream is None else upstream
            return upstream[0] * inter_grad + upstream[1] * intra_grad

        return squared - squared * ops.stack([inter, intra]), grad

    return both(student)


def hinton(teacher_logits, student_logits, temperature, standardize=False):
    """T² · mean over the batch of KL(softmax(t/T) ‖ softmax(s/T))."""
    term = Hinton({"temperature": temperature, "standardize": standardize}, "hinton")
    return term.value(term.teacher_targets(teacher_logits, None), student_logits, None)[0]


def dkd(teacher_logits, student_logits, labels, temperature, standardize=False):
    """``(tckd, nckd)``: DKD's two terms, each × T² and averaged over the batch, before α and β."""
    term = DecoupledKD({"temperature": temperature, "standardize": standardize}, "dkd")
    _, parts = term.value(term.teacher_targets(teacher_logits, labels), student_logits, labels)
    return parts["tckd"], parts["nckd"]


def dist(teacher_logits, student_logits, temperature):
    """``(inter, intra)``: DIST's two relations, each × τ², before β and γ."""
    term = Dist({"temperature": temperature}, "dist")
    _, parts = term.value(term.teacher_targets(teacher_logits, None), student_logits, None)
    return parts["inter"], parts["intra"]


def fitnet(student_feature, teacher_feature):
    """Mean squared error between a (regressed) student feature and the teacher's."""
    from keras import ops

    return ops.mean(ops.square(ops.cast(student_feature, "float32") - ops.cast(teacher_feature, "float32")))


def attention(student_feature, teacher_feature):
    """Attention transfer between two NHWC maps: the larger map is average-pooled to the smaller's size."""
    from keras import ops

    def pooled_to(feature, size):
        factor = feature.shape[1] // size
        return feature if factor == 1 else ops.average_pool(feature, factor, factor, "valid")

    def attention_map(feature):  # mean over channels of f², flattened, L2-normalised per sample
        feature = ops.cast(feature, "float32")
        flat = ops.reshape(ops.mean(ops.square(feature), axis=-1), (-1, feature.shape[1] * feature.shape[2]))
        return flat / ops.maximum(ops.sqrt(ops.sum(ops.square(flat), axis=-1, keepdims=True)), 1e-12)

    size = min(student_feature.shape[1], teacher_feature.shape[1])
    student_map = attention_map(pooled_to(student_feature, size))
    teacher_map = attention_map(pooled_to(teacher_feature, size))
    return ops.mean(ops.square(student_map - teacher_map))


def rkd(student_feature, teacher_feature, distance=True, angle=True, triplets=None):
    """``(distance, angle)``: RKD's two smooth-L1 terms, before their weights (0 where not asked for).

    ``triplets``: None for the angle term over every triplet (i, j, k) of the batch, as the authors
    compute it; else an (N, 3) array of numbers in [0, 1), each row the batch positions of one triplet
    as fractions of the batch size, and the term is the mean over those N (:func:`sampled_cosines`).

    Both relations are computed from the difference vectors e_j − e_i, as the authors' angle is:
    a B×B×D tensor, B²·D floats (51 M, 205 MB, at batch 256 on 784 features: fine for the pooled
    or penultimate features RKD compares). The Gram matrix's |a|² + |b|² − 2a·b cancels in float32
    when two rows nearly coincide, and its noise, divided by a tiny distance, swamps the cosines
    and their gradient; the difference of two close float32 rows is exact. The angle term then
    costs B³·D multiply-adds (a batched matmul), the authors' cost.
    """
    from keras import ops

    def flat(feature):
        feature = ops.cast(feature, "float32")
        return ops.reshape(feature, (-1, int(math.prod(feature.shape[1:]))))

    def relations(feature):
        differences = feature[None, :, :] - feature[:, None, :]  # [i, j] = e_j − e_i
        squared = ops.sum(ops.square(differences), axis=-1)
        coincident = squared <= 0.0  # the diagonal and exact duplicates: a zero difference vector
        # sqrt, hence a norm, has an infinite derivative at 0 (NaN once multiplied by 0): take it
        # where the square is positive only; coincident pairs get the authors' values through
        # `where`, constants with zero gradient.
        safe = ops.where(coincident, 1.0, squared)
        result = [None, None]
        if distance:
            # The authors' pdist: sqrt(max(d², 1e-12)) off the diagonal (so a coincident pair is 1e-6
            # away and counts in the mean), 0 on it; divided by the mean over pairs of distinct samples.
            off_diagonal = 1.0 - ops.eye(ops.shape(squared)[0], dtype="float32")
            d = ops.where(coincident, 1e-6, ops.sqrt(ops.maximum(safe, 1e-12))) * off_diagonal
            count = ops.sum(off_diagonal)
            mean = ops.sum(d) / ops.maximum(count, 1.0)
            # One sample has no pair: its distances stay 0 rather than 0 / 0 (the term is then 0).
            result[0] = d / ops.where(mean > 0.0, mean, 1.0)
        if angle and triplets is not None:
            result[1] = sampled_cosines(feature, triplets)
        elif angle:
            # F.normalize: x / max(|x|, 1e-12); the zero vector's direction is the zero vector, so
            # the cosines of a coincident pair are 0, as the authors' are.
            norms = ops.maximum(ops.sqrt(safe), 1e-12)
            directions = ops.where(coincident[:, :, None], 0.0, differences / norms[:, :, None])
            cosines = ops.matmul(directions, ops.transpose(directions, (0, 2, 1)))
            result[1] = ops.reshape(cosines, (-1,))
        return result

    if not distance and triplets is not None:  # the sampled angle alone needs no B×B differences
        def relations(feature):  # noqa: F811
            return [None, sampled_cosines(feature, triplets)]

    student_d, student_a = relations(flat(student_feature))
    teacher_d, teacher_a = relations(ops.stop_gradient(flat(teacher_feature)))
    zero = ops.convert_to_tensor(0.0)
    return (smooth_l1(student_d, teacher_d) if distance else zero, smooth_l1(student_a, teacher_a) if angle else zero)


def sampled_cosines(feature, triplets):
    """RKD's angle cosines ⟨(e_j − e_i)/|e_j − e_i|, (e_k − e_i)/|e_k − e_i|⟩ of the sampled triplets: ``triplets``
    (N, 3) are fractions of the batch size, so they index any batch, the last smaller one too. A uniform
    sample of the B³ triplets the full term averages (degenerate ones included, as there: a zero
    difference has cosine 0), so its mean estimates the full term's."""
    from keras import ops

    size = ops.cast(ops.shape(feature)[0], "float32")
    positions = ops.minimum(ops.cast(ops.floor(ops.convert_to_tensor(triplets) * size), "int32"),
                            ops.cast(size, "int32") - 1)
    anchor = ops.take(feature, positions[:, 0], axis=0)

    def direction(rows):
        difference = ops.take(feature, rows, axis=0) - anchor
        squared = ops.sum(ops.square(difference), axis=-1, keepdims=True)
        coincident = squared <= 0.0
        return ops.where(coincident, 0.0, difference / ops.maximum(ops.sqrt(ops.where(coincident, 1.0, squared)),
                                                                   1e-12))

    return ops.sum(direction(positions[:, 1]) * direction(positions[:, 2]), axis=-1)


def smooth_l1(x, y):
    """Mean smooth-L1 (Huber with δ 1) between ``x`` and ``y``, as PyTorch's default."""
    from keras import ops

    difference = ops.abs(x - y)
    return ops.mean(ops.where(difference < 1.0, 0.5 * ops.square(difference), difference - 0.5))


# ----------------------------------------------------------------------------------------------
# Each kind's formula.


class Formula:
    """What a declared term computes; mixed into the subclass of each kind's declaration."""


class LogitFormula(Formula):
    """``teacher_targets`` turns one teacher's logits into the distributions the term compares the
    student with, as log-probabilities; several teachers' are averaged (as probabilities) before
    ``value`` compares them with the student."""

    def _logits(self, logits):
        from keras import ops

        return standardize(logits) if self.config["standardize"] else ops.cast(logits, "float32")

    def teacher_targets(self, teacher_logits, labels):
        raise NotImplementedError

    def value(self, targets, student_logits, labels, progress=None):
        """``(value, parts)``: the term, and its named parts for the curves (may be empty)."""
        raise NotImplementedError


@formula
class Hinton(LogitFormula, kinds.Hinton):
    """Computes :class:`kd.losses.kinds.Hinton`."""

    def teacher_targets(self, teacher_logits, labels):
        from keras import ops

        return (ops.log_softmax(self._logits(teacher_logits) / self.temperature, axis=-1),)

    def value(self, targets, student_logits, labels, progress=None):
        from keras import ops

        student_log_probs = ops.log_softmax(self._logits(student_logits) / self.temperature, axis=-1)
        return self.temperature**2 * kl_from_log_probs(targets[0], student_log_probs), {}


@formula
class DecoupledKD(LogitFormula, kinds.DecoupledKD):
    """Computes :class:`kd.losses.kinds.DecoupledKD` (its gradient beside it: :func:`decoupled_kl`)."""

    def _split(self, scaled_logits, labels):
        from keras import ops

        mask = ops.one_hot(labels, scaled_logits.shape[-1], dtype="float32")
        others = ops.log_softmax(scaled_logits - NEGATIVE_LARGE * mask, axis=-1)
        return target_and_rest(ops.log_softmax(scaled_logits, axis=-1), others, mask), others

    def teacher_targets(self, teacher_logits, labels):
        return self._split(self._logits(teacher_logits) / self.temperature, labels)

    def value(self, targets, student_logits, labels, progress=None):
        from keras import ops

        scaled = self._logits(student_logits) / self.temperature
        both = decoupled_kl(targets, scaled, ops.one_hot(labels, scaled.shape[-1], dtype="float32"),
                            self.temperature)
        tckd, nckd = both[0], both[1]
        total = self.config["alpha"] * tckd + self.config["beta"] * nckd
        if self.config["warmup_epochs"] > 1 and progress is not None:  # min(epoch / warm-up, 1), epochs from 1
            total = ops.minimum(ops.cast(progress, "float32") / self.config["warmup_epochs"], 1.0) * total
        return total, {"tckd": tckd, "nckd": nckd}


@formula
class Dist(LogitFormula, kinds.Dist):
    """Computes :class:`kd.losses.kinds.Dist`."""

    def _logits(self, logits):
        from keras import ops

        return ops.cast(logits, "float32")

    def teacher_targets(self, teacher_logits, labels):
        from keras import ops

        return (ops.log_softmax(self._logits(teacher_logits) / self.temperature, axis=-1),)

    def value(self, targets, student_logits, labels, progress=None):
        from keras import ops

        # exp of log_softmax, not softmax: the same probabilities (to rounding), and on TensorFlow's CPU
        # kernels the Softmax op and its gradient cost more than the rest of the term together.
        student = ops.exp(ops.log_softmax(self._logits(student_logits) / self.temperature, axis=-1))
        both = dist_relations(ops.exp(targets[0]), student, self.temperature)
        inter, intra = both[0], both[1]
        return self.config["beta"] * inter + self.config["gamma"] * intra, {"inter": inter, "intra": intra}


class FeatureFormula(Formula):
    """A term on the student's and the teacher's layers (``name -> tensor``)."""

    def build(self, student_shapes, teacher_shapes):
        """Check the layers' shapes (``name -> shape``, batch axis first); return trainable layers."""
        self.check_shapes(student_shapes, teacher_shapes)
        return []

    def value(self, student_features, teacher_features):
        raise NotImplementedError


@formula
class Hint(FeatureFormula, kinds.Hint):
    """Computes :class:`kd.losses.kinds.Hint`."""

    def build(self, student_shapes, teacher_shapes):
        import keras

        (student_name,), (teacher_name,) = self.student_layers, self.teacher_layers
        units = teacher_shapes[teacher_name][-1]
        if self.check_shapes(student_shapes, teacher_shapes) == "conv":
            self.regressor = keras.layers.Conv2D(units, 1, name=f"hint_regressor_{student_name}")
        else:
            self.regressor = keras.layers.Dense(units, name=f"hint_regressor_{student_name}")
        self.regressor.build(tuple(student_shapes[student_name]))
        return [self.regressor]

    def value(self, student_features, teacher_features):
        (student_name,), (teacher_name,) = self.student_layers, self.teacher_layers
        return fitnet(self.regressor(student_features[student_name]), teacher_features[teacher_name]), {}


@formula
class Attention(FeatureFormula, kinds.Attention):
    """Computes :class:`kd.losses.kinds.Attention`."""

    def value(self, student_features, teacher_features):
        pairs = zip(self.student_layers, self.teacher_layers, strict=True)
        return add_all([attention(student_features[s], teacher_features[t]) for s, t in pairs]), {}


@formula
class RelationalKD(FeatureFormula, kinds.RelationalKD):
    """Computes :class:`kd.losses.kinds.RelationalKD`."""

    @property
    def triplets(self):
        """The sampled triplets' batch positions, as fractions (fixed: the shuffled batches vary what they pick)."""
        count = self.config["angle_triplets"]
        if count is None:
            return None
        if getattr(self, "_triplets", None) is None:
            self._triplets = np.random.default_rng(count).random((count, 3), dtype=np.float32)
        return self._triplets

    def value(self, student_features, teacher_features):
        # The angle term compares every triplet of the batch: B³ cosines of D-vectors, at batch 256
        # on 784 features 13 G multiply-adds for the student and as many for the teacher, more than
        # the rest of a small student's step; angle_triplets samples N of them instead. A zero weight
        # skips a term.
        distance, angle = rkd(student_features[self.student_layers[0]], teacher_features[self.teacher_layers[0]],
                              distance=self.config["distance_weight"] > 0, angle=self.config["angle_weight"] > 0,
                              triplets=self.triplets)
        total = self.config["distance_weight"] * distance + self.config["angle_weight"] * angle
        return total, {"distance": distance, "angle": angle}
