"""The distillation objective: a weighted sum of named terms, declared in params.yaml.

A distilled model's loss per batch is

    loss = (1 − w) · CE(labels, student) + w · Σᵢ weightᵢ · termᵢ

``w`` is the model's ``soft_target_weight`` (the teacher's share, as in Hinton et al.),
and the terms come from its ``loss`` key: a kind (``hinton``), a kind with options
(``{kind: dkd, beta: 8}``), or a list of them, each with an optional ``weight``. The
default, ``hinton`` with weight 1, is Hinton et al.'s loss, computed exactly as before.

Each kind is one small class registered with :func:`kind`:

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
JAX, PyTorch). This module is imported by params validation, which must stay light: Keras is
imported inside the functions that compute.
"""

import math

from kd.errors import ParamsError

KINDS = {}  # kind name -> Term subclass
NEGATIVE_LARGE = 1000.0  # subtracted from the target class's scaled logit to remove it (DKD's NCKD)


def kind(cls):
    """Register a :class:`Term` subclass under its ``name``."""
    KINDS[cls.name] = cls
    return cls


# ----------------------------------------------------------------------------------------------
# The terms' mathematics, as functions of tensors (each checked against a NumPy translation of
# the authors' code in tests/test_loss_kinds.py).


def hard_label_loss(labels, logits):
    """Mean cross-entropy of integer ``labels`` against ``logits``."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def mixed_hard_label_loss(labels, logits, mixing):
    """Mixup's cross-entropy: λ · CE(labels) + (1 − λ) · CE(partner labels), averaged over the batch;
    ``mixing`` is ``(partner labels, λ)``, or None for :func:`hard_label_loss`."""
    from keras import ops

    if mixing is None:
        return hard_label_loss(labels, logits)
    partner_labels, lam = mixing
    logits = ops.cast(logits, "float32")
    own = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    partner = ops.sparse_categorical_crossentropy(partner_labels, logits, from_logits=True)
    lam = ops.cast(lam, "float32")
    return ops.mean(lam * own + (1.0 - lam) * partner)


def add_all(values):
    """``values[0] + values[1] + …``, left to right (one term: itself)."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def stateless_uniform(count, seed, step):
    """``count`` uniform draws in [0, 1) that depend only on ``(seed, step)``, on every backend.

    On TensorFlow, TensorFlow's stateless op, as kd has drawn them since DGKD came in (so its
    runs stay as they were); elsewhere the backend's counter-based generator keyed the same way.
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


def target_and_rest(log_probs, target_mask):
    """Log-probabilities of DKD's two bins, [target class, all other classes], without a log of 0."""
    from keras import ops

    target = ops.sum(log_probs * target_mask, axis=-1, keepdims=True)
    others = ops.where(target_mask > 0, -math.inf, log_probs)  # exp(-inf) = 0: no gradient, no NaN
    rest = ops.logsumexp(others, axis=-1, keepdims=True)
    return ops.concatenate([target, rest], axis=-1)


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


def rkd(student_feature, teacher_feature, distance=True, angle=True):
    """``(distance, angle)``: RKD's two smooth-L1 terms, before their weights (0 where not asked for).

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
        if angle:
            # F.normalize: x / max(|x|, 1e-12); the zero vector's direction is the zero vector, so
            # the cosines of a coincident pair are 0, as the authors' are.
            norms = ops.maximum(ops.sqrt(safe), 1e-12)
            directions = ops.where(coincident[:, :, None], 0.0, differences / norms[:, :, None])
            cosines = ops.matmul(directions, ops.transpose(directions, (0, 2, 1)))
            result[1] = ops.reshape(cosines, (-1,))
        return result

    student_d, student_a = relations(flat(student_feature))
    teacher_d, teacher_a = relations(ops.stop_gradient(flat(teacher_feature)))
    zero = ops.convert_to_tensor(0.0)
    return (smooth_l1(student_d, teacher_d) if distance else zero, smooth_l1(student_a, teacher_a) if angle else zero)


def smooth_l1(x, y):
    """Mean smooth-L1 (Huber with δ 1) between ``x`` and ``y``, as PyTorch's default."""
    from keras import ops

    difference = ops.abs(x - y)
    return ops.mean(ops.where(difference < 1.0, 0.5 * ops.square(difference), difference - 0.5))


# ----------------------------------------------------------------------------------------------
# The kinds: what params.yaml may declare.


class Term:
    """One kind of knowledge a student learns from a teacher.

    Subclasses declare their ``name``, their ``options`` (name -> default; ``REQUIRED`` for
    none), their ``default_weight`` and whether they need ``features`` (the teacher's layers,
    so an online teacher). Options are validated when params.yaml is read.
    """

    name = None
    options = {}
    default_weight = 1.0
    features = False

    def __init__(self, options, where):
        self.where = where
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ParamsError(f"{where}: unknown option(s) {', '.join(unknown)} of kind {self.name!r}; "
                              f"expected {', '.join(self.options) or 'none'}")
        missing = [key for key, default in self.options.items() if default is REQUIRED and key not in options]
        if missing:
            raise ParamsError(f"{where}: kind {self.name!r} needs option(s) {', '.join(missing)}")
        self.config = {**self.options, **options}
        self.inherited = ()  # options taken from the model rather than declared in the term
        self.validate()

    def validate(self):
        """Check ``self.config``; raise ParamsError naming ``self.where``."""

    def __repr__(self):
        """The kind and the options that differ from its defaults: ``dkd(beta=4.0)``."""
        changed = {k: v for k, v in self.config.items() if v != self.options[k] and k not in self.inherited}
        return self.name + (f"({', '.join(f'{k}={v}' for k, v in changed.items())})" if changed else "")

    def __eq__(self, other):
        return type(self) is type(other) and self.config == other.config

    def _positive(self, option, allow_zero=False):
        value = self.config[option]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (value == 0 and not allow_zero):
            raise ParamsError(f"{self.where}.{option}: expected a number {'>=' if allow_zero else '>'} 0, "
                              f"found {value!r}")
        return float(value)

    def _flag(self, option):
        if not isinstance(self.config[option], bool):
            raise ParamsError(f"{self.where}.{option}: expected true or false, found {self.config[option]!r}")


REQUIRED = object()


class LogitTerm(Term):
    """A term on logits: learns from cached logits, and from several teachers at once.

    ``teacher_targets`` turns one teacher's logits into the distributions the term compares
    the student with, as log-probabilities; several teachers' are averaged (as probabilities)
    before ``value`` compares them with the student.
    """

    options = {"temperature": None, "standardize": False}

    def validate(self):
        if self.config["temperature"] is not None:
            self._positive("temperature")
        self._flag("standardize")

    def with_temperature(self, temperature):
        """A copy whose temperature defaults to the model's ``temperature``."""
        if self.config["temperature"] is not None:
            return self
        term = type(self)({**self.config, "temperature": temperature}, self.where)
        term.inherited = ("temperature",)
        return term

    @property
    def temperature(self):
        return self.config["temperature"]

    def _logits(self, logits):
        from keras import ops

        return standardize(logits) if self.config["standardize"] else ops.cast(logits, "float32")

    def teacher_targets(self, teacher_logits, labels):
        raise NotImplementedError

    def value(self, targets, student_logits, labels, progress=None):
        """``(value, parts)``: the term, and its named parts for the curves (may be empty)."""
        raise NotImplementedError


@kind
class Hinton(LogitTerm):
    """Hinton et al.'s soft targets: T² · KL(softmax(t/T) ‖ softmax(s/T))."""

    name = "hinton"

    def teacher_targets(self, teacher_logits, labels):
        from keras import ops

        return (ops.log_softmax(self._logits(teacher_logits) / self.temperature, axis=-1),)

    def value(self, targets, student_logits, labels, progress=None):
        from keras import ops

        student_log_probs = ops.log_softmax(self._logits(student_logits) / self.temperature, axis=-1)
        return self.temperature**2 * kl_from_log_probs(targets[0], student_log_probs), {}


@kind
class DecoupledKD(LogitTerm):
    """DKD: TCKD on the [target, rest] bins + NCKD on the other classes, each × T²."""

    name = "dkd"
    options = {"temperature": None, "standardize": False, "alpha": 1.0, "beta": 8.0, "warmup_epochs": 1}

    def validate(self):
        super().validate()
        self._positive("alpha", allow_zero=True)
        self._positive("beta", allow_zero=True)
        warmup = self.config["warmup_epochs"]
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ParamsError(f"{self.where}.warmup_epochs: expected an integer >= 0, found {warmup!r}")

    def _split(self, scaled_logits, labels):
        from keras import ops

        mask = ops.one_hot(labels, scaled_logits.shape[-1], dtype="float32")
        bins = target_and_rest(ops.log_softmax(scaled_logits, axis=-1), mask)
        others = ops.log_softmax(scaled_logits - NEGATIVE_LARGE * mask, axis=-1)
        return bins, others

    def teacher_targets(self, teacher_logits, labels):
        return self._split(self._logits(teacher_logits) / self.temperature, labels)

    def value(self, targets, student_logits, labels, progress=None):
        student_bins, student_others = self._split(self._logits(student_logits) / self.temperature, labels)
        tckd = self.temperature**2 * kl_from_log_probs(targets[0], student_bins)
        nckd = self.temperature**2 * kl_from_log_probs(targets[1], student_others)
        total = self.config["alpha"] * tckd + self.config["beta"] * nckd
        if self.config["warmup_epochs"] > 1 and progress is not None:  # min(epoch / warm-up, 1), epochs from 1
            from keras import ops

            total = ops.minimum(ops.cast(progress, "float32") / self.config["warmup_epochs"], 1.0) * total
        return total, {"tckd": tckd, "nckd": nckd}


@kind
class Dist(LogitTerm):
    """DIST: 1 − Pearson correlation of softmax(z/τ) per sample (inter) and per class (intra), × τ²."""

    name = "dist"
    options = {"temperature": None, "beta": 1.0, "gamma": 1.0}

    def validate(self):
        if self.config["temperature"] is not None:
            self._positive("temperature")
        self._positive("beta", allow_zero=True)
        self._positive("gamma", allow_zero=True)

    def _logits(self, logits):
        from keras import ops

        return ops.cast(logits, "float32")

    def teacher_targets(self, teacher_logits, labels):
        from keras import ops

        return (ops.log_softmax(self._logits(teacher_logits) / self.temperature, axis=-1),)

    def value(self, targets, student_logits, labels, progress=None):
        from keras import ops

        def norm(a):  # 0 with zero gradient for a zero vector (a constant column), as PyTorch's norm
            squared = ops.sum(ops.square(a), axis=1)
            return ops.where(squared > 0.0, ops.sqrt(ops.where(squared > 0.0, squared, 1.0)), 0.0)

        def pearson(a, b):  # per row: cosine of the mean-centred vectors, eps 1e-8 as the authors'
            a = a - ops.mean(a, axis=1, keepdims=True)
            b = b - ops.mean(b, axis=1, keepdims=True)
            return ops.sum(a * b, axis=1) / (norm(a) * norm(b) + 1e-8)

        student = ops.softmax(self._logits(student_logits) / self.temperature, axis=-1)
        teacher = ops.exp(targets[0])
        inter = self.temperature**2 * (1.0 - ops.mean(pearson(student, teacher)))
        intra = self.temperature**2 * (1.0 - ops.mean(pearson(ops.transpose(student), ops.transpose(teacher))))
        return self.config["beta"] * inter + self.config["gamma"] * intra, {"inter": inter, "intra": intra}


class FeatureTerm(Term):
    """A term on named layers of the student and of its (nearest) teacher: needs the teacher online."""

    features = True

    def validate(self):
        for option in ("student_layer", "teacher_layer"):
            names = self.config[option]
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise ParamsError(f"{self.where}.{option}: expected a layer name (Keras's `name`), found {names!r}")
        if len(self.student_layers) != len(self.teacher_layers):
            raise ParamsError(f"{self.where}: {len(self.student_layers)} student layer(s) but "
                              f"{len(self.teacher_layers)} teacher layer(s); they are compared in pairs")

    @property
    def student_layers(self):
        names = self.config["student_layer"]
        return (names,) if isinstance(names, str) else tuple(names)

    @property
    def teacher_layers(self):
        names = self.config["teacher_layer"]
        return (names,) if isinstance(names, str) else tuple(names)

    def build(self, student_shapes, teacher_shapes):
        """Check the layers' shapes (``name -> shape``, batch axis first); return trainable layers."""
        return []

    def value(self, student_features, teacher_features):
        raise NotImplementedError


@kind
class Hint(FeatureTerm):
    """FitNets: MSE between a regressor on the student's layer and the teacher's layer.

    The regressor is a 1×1 convolution (maps of equal height and width) or a dense layer
    (vectors); it trains with the student and is not part of the saved student.
    """

    name = "hint"
    options = {"student_layer": REQUIRED, "teacher_layer": REQUIRED}
    default_weight = 100.0

    def validate(self):
        super().validate()
        if len(self.student_layers) != 1:
            raise ParamsError(f"{self.where}: a hint compares one student layer with one teacher layer")

    def build(self, student_shapes, teacher_shapes):
        import keras

        (student_name,), (teacher_name,) = self.student_layers, self.teacher_layers
        student_shape, teacher_shape = tuple(student_shapes[student_name]), tuple(teacher_shapes[teacher_name])
        if len(student_shape) == len(teacher_shape) == 4 and student_shape[1:3] == teacher_shape[1:3]:
            self.regressor = keras.layers.Conv2D(teacher_shape[-1], 1, name=f"hint_regressor_{student_name}")
        elif len(student_shape) == len(teacher_shape) == 2:
            self.regressor = keras.layers.Dense(teacher_shape[-1], name=f"hint_regressor_{student_name}")
        else:
            raise ParamsError(
                f"{self.where}: student layer {student_name!r} gives {_shape(student_shape)} and teacher layer "
                f"{teacher_name!r} gives {_shape(teacher_shape)}; a regressor bridges channels (maps of the same "
                "height and width) or units (vectors), not different spatial sizes or ranks"
            )
        self.regressor.build(student_shape)
        return [self.regressor]

    def value(self, student_features, teacher_features):
        (student_name,), (teacher_name,) = self.student_layers, self.teacher_layers
        return fitnet(self.regressor(student_features[student_name]), teacher_features[teacher_name]), {}


@kind
class Attention(FeatureTerm):
    """Attention transfer, summed over pairs of layers (NHWC maps whose sizes divide each other)."""

    name = "attention"
    options = {"student_layer": REQUIRED, "teacher_layer": REQUIRED}
    default_weight = 1000.0

    def build(self, student_shapes, teacher_shapes):
        for student_name, teacher_name in zip(self.student_layers, self.teacher_layers, strict=True):
            student_shape, teacher_shape = student_shapes[student_name], teacher_shapes[teacher_name]
            sizes = (student_shape[1:3], teacher_shape[1:3])
            ok = len(student_shape) == len(teacher_shape) == 4 and all(h == w for h, w in sizes) and (
                max(sizes[0][0], sizes[1][0]) % min(sizes[0][0], sizes[1][0]) == 0)
            if not ok:
                raise ParamsError(
                    f"{self.where}: student layer {student_name!r} gives {_shape(student_shape)} and teacher layer "
                    f"{teacher_name!r} gives {_shape(teacher_shape)}; attention compares square feature maps "
                    "(batch, height, width, channels) whose sizes divide each other"
                )
        return []

    def value(self, student_features, teacher_features):
        pairs = zip(self.student_layers, self.teacher_layers, strict=True)
        return add_all([attention(student_features[s], teacher_features[t]) for s, t in pairs]), {}


@kind
class RelationalKD(FeatureTerm):
    """RKD: distance and angle relations between the samples of a batch, on one layer each."""

    name = "rkd"
    options = {"student_layer": REQUIRED, "teacher_layer": REQUIRED, "distance_weight": 25.0, "angle_weight": 50.0}

    def validate(self):
        super().validate()
        if len(self.student_layers) != 1:
            raise ParamsError(f"{self.where}: rkd compares one student layer with one teacher layer")
        self._positive("distance_weight", allow_zero=True)
        self._positive("angle_weight", allow_zero=True)

    def value(self, student_features, teacher_features):
        # The angle term compares every triplet of the batch: B³ cosines of D-vectors, at batch 256
        # on 784 features 13 G multiply-adds for the student and as many for the teacher, more than
        # the rest of a small student's step. A zero weight skips it (and likewise the distance term).
        distance, angle = rkd(student_features[self.student_layers[0]], teacher_features[self.teacher_layers[0]],
                              distance=self.config["distance_weight"] > 0, angle=self.config["angle_weight"] > 0)
        total = self.config["distance_weight"] * distance + self.config["angle_weight"] * angle
        return total, {"distance": distance, "angle": angle}


def _shape(shape):
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


# ----------------------------------------------------------------------------------------------
# From params.yaml to terms, and the objective that combines them.


def parse_loss(raw, where, temperature):
    """``((term, weight), ...)`` from a ``loss`` value: a kind, a kind with options, or a list.

    Logit terms without their own ``temperature`` take the model's ``temperature``.
    """
    entries = raw if isinstance(raw, list) else [raw]
    if not entries:
        raise ParamsError(f"{where}: expected at least one term, found an empty list")
    terms = []
    for position, entry in enumerate(entries):
        key = f"{where}[{position}]" if isinstance(raw, list) else where
        if isinstance(entry, str):
            entry = {"kind": entry}
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ParamsError(f"{key}: expected a kind ({', '.join(KINDS)}) or a mapping with `kind` and its "
                              f"options, found {entry!r}")
        options = dict(entry)
        name = options.pop("kind")
        if name not in KINDS:
            raise ParamsError(f"{key}.kind: unknown kind {name!r}; expected one of {', '.join(KINDS)}")
        term_class = KINDS[name]
        weight = options.pop("weight", term_class.default_weight)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ParamsError(f"{key}.weight: expected a number >= 0, found {weight!r}")
        term = term_class(options, key)
        if isinstance(term, LogitTerm):
            term = term.with_temperature(temperature)
        terms.append((term, float(weight)))
    if not any(weight > 0 for _, weight in terms):
        raise ParamsError(f"{where}: every term has weight 0; give at least one a weight > 0")
    return tuple(terms)


class Objective:
    """The loss of one distilled model: hard labels and the weighted terms of its teachers.

    ``teachers`` are ``(name, weight)`` pairs; the first is the nearest teacher, whose layers
    the feature terms read. ``dense`` gives each teacher its own logit terms (DGKD), with
    ``drop`` of them left out at random in each batch (seeded); otherwise the teachers'
    targets are averaged with their weights (an ensemble).
    """

    def __init__(self, distillation, seed=0):
        self.terms = distillation.loss
        self.soft_target_weight = distillation.soft_target_weight
        self.teachers = distillation.teachers
        self.dense = distillation.dense
        self.drop = distillation.drop
        self.seed = seed
        self.trainable_layers = []
        self.names = self._part_names()

    @property
    def student_layers(self):
        return tuple(dict.fromkeys(n for term, _ in self.terms if term.features for n in term.student_layers))

    @property
    def teacher_layers(self):
        return tuple(dict.fromkeys(n for term, _ in self.terms if term.features for n in term.teacher_layers))

    @property
    def needs_epoch(self):
        return any(isinstance(term, DecoupledKD) and term.config["warmup_epochs"] > 1 for term, _ in self.terms)

    def build(self, student_shapes, teacher_shapes):
        """Check feature shapes and create the terms' trainable layers (call under the strategy scope)."""
        for term, _ in self.terms:
            if term.features:
                self.trainable_layers += term.build(student_shapes, teacher_shapes)

    def _labels(self):
        counts = {}
        for term, _ in self.terms:
            counts[term.name] = counts.get(term.name, 0) + 1
        seen, labels = {}, []
        for term, _ in self.terms:
            seen[term.name] = seen.get(term.name, 0) + 1
            labels.append(term.name if counts[term.name] == 1 else f"{term.name}_{seen[term.name]}")
        return labels

    def _part_names(self):
        """The curves this objective logs besides ``loss`` and ``accuracy``."""
        names = ["hard_loss", "soft_loss"]
        several = len(self.terms) > 1
        for label, (term, _) in zip(self._labels(), self.terms, strict=True):
            if several:
                names.append(label)
            if self.dense and isinstance(term, LogitTerm) and len(self.teachers) > 1:
                names += [f"{label}_{teacher}" for teacher, _ in self.teachers]
            names += [f"{label}_{part}" for part in _PARTS.get(term.name, ())]
        return names

    def __call__(self, labels, student, teachers, epoch=None, step=None, mixing=None):
        """``(loss, parts)`` for a batch.

        ``student`` and each of ``teachers`` map ``"logits"`` (and requested layer names) to
        tensors; ``teachers`` are in the order of ``self.teachers``. ``mixing`` is ``(partner
        labels, λ)`` for mixed-up images (views with mixup), whose hard labels are mixed alike.
        """
        from keras import ops

        student_logits = ops.cast(student["logits"], "float32")  # float16/bfloat16 under mixed precision
        hard = mixed_hard_label_loss(labels, student_logits, mixing)
        parts, weighted = {"hard_loss": hard}, []
        several = len(self.terms) > 1
        for label, (term, weight) in zip(self._labels(), self.terms, strict=True):
            if term.features:
                value, term_parts = term.value(student, teachers[0])
            elif self.dense and len(self.teachers) > 1:
                value, term_parts = self._dense(label, term, labels, student_logits, teachers, epoch, step, parts)
            else:
                targets = self._ensemble(term, labels, teachers)
                value, term_parts = term.value(targets, student_logits, labels, epoch)
            if several:
                parts[label] = value
            parts.update({f"{label}_{name}": part for name, part in term_parts.items()})
            weighted.append(value if weight == 1.0 else weight * value)
        soft = add_all(weighted)
        parts["soft_loss"] = soft
        w = self.soft_target_weight
        return w * soft + (1.0 - w) * hard, parts

    def _ensemble(self, term, labels, teachers):
        """The teachers' targets, averaged as probabilities with the teachers' weights."""
        from keras import ops

        each = [term.teacher_targets(outputs["logits"], labels) for outputs in teachers]
        if len(each) == 1:
            return each[0]
        total = sum(weight for _, weight in self.teachers)
        log_weights = [math.log(weight / total) if weight > 0 else -math.inf for _, weight in self.teachers]
        kept = [(lw, targets) for lw, targets in zip(log_weights, each, strict=True) if lw > -math.inf]
        return tuple(
            ops.logsumexp(ops.stack([lw + targets[i] for lw, targets in kept]), axis=0)
            for i in range(len(each[0]))
        )

    def _dense(self, label, term, labels, student_logits, teachers, epoch, step, parts):
        """DGKD: one term per teacher, summed with the teachers' weights, ``drop`` left out per batch."""
        from keras import ops

        values = []
        for (name, _), outputs in zip(self.teachers, teachers, strict=True):
            value, _ = term.value(term.teacher_targets(outputs["logits"], labels), student_logits, labels, epoch)
            parts[f"{label}_{name}"] = value
            values.append(value)
        weights = ops.convert_to_tensor([weight for _, weight in self.teachers], "float32")
        if self.drop:
            # The `drop` teachers with the smallest uniform draws leave this batch's sum; seeded by step.
            draws = stateless_uniform(len(values), self.seed, step)
            threshold = ops.sort(draws)[self.drop - 1]
            weights = weights * ops.cast(draws > threshold, "float32")
        return ops.sum(weights * ops.stack(values)), {}


_PARTS = {"dkd": ("tckd", "nckd"), "dist": ("inter", "intra"), "rkd": ("distance", "angle")}
