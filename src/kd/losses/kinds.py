"""The kinds of loss term params.yaml may declare: names, options, defaults and their checks.

This is all that validating params.yaml needs, and it holds no maths and imports no Keras: the
stages of models that learn without a loss (prepare, train@, views@, export@, evaluate) depend on
it, not on the formulas. Each kind's formula is the subclass of the same name in
:mod:`kd.losses.terms`; a new kind is a declaration here (registered with :func:`kind`) and that
subclass there.
"""

import math

from kd.errors import ParamsError

KINDS = {}  # kind name -> its declaration (a Term subclass)
REQUIRED = object()  # an option without a default


def kind(cls):
    """Register a :class:`Term` subclass under its ``name``."""
    KINDS[cls.name] = cls
    return cls


class Term:
    """One kind of knowledge a student learns from a teacher.

    Subclasses declare their ``name``, their ``options`` (name -> default; ``REQUIRED`` for
    none), their ``default_weight``, whether they need ``features`` (the teacher's layers,
    so an online teacher) and the ``parts`` of their value. Options are validated when
    params.yaml is read; the subclass of the same name in :mod:`kd.losses.terms` computes it.
    """

    name = None
    options = {}
    default_weight = 1.0
    features = False
    parts = ()  # the named parts of its value, logged as curves (``<kind>_<part>``)

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


class LogitTerm(Term):
    """A term on logits: learns from cached logits, and from several teachers at once."""

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


@kind
class Hinton(LogitTerm):
    """Hinton et al.'s soft targets: T² · KL(softmax(t/T) ‖ softmax(s/T))."""

    name = "hinton"


@kind
class DecoupledKD(LogitTerm):
    """DKD: TCKD on the [target, rest] bins + NCKD on the other classes, each × T²."""

    name = "dkd"
    options = {"temperature": None, "standardize": False, "alpha": 1.0, "beta": 8.0, "warmup_epochs": 1}
    parts = ("tckd", "nckd")

    def validate(self):
        super().validate()
        self._positive("alpha", allow_zero=True)
        self._positive("beta", allow_zero=True)
        warmup = self.config["warmup_epochs"]
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ParamsError(f"{self.where}.warmup_epochs: expected an integer >= 0, found {warmup!r}")


@kind
class Dist(LogitTerm):
    """DIST: 1 − Pearson correlation of softmax(z/τ) per sample (inter) and per class (intra), × τ²."""

    name = "dist"
    options = {"temperature": None, "beta": 1.0, "gamma": 1.0}
    parts = ("inter", "intra")

    def validate(self):
        if self.config["temperature"] is not None:
            self._positive("temperature")
        self._positive("beta", allow_zero=True)
        self._positive("gamma", allow_zero=True)


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

    def check_shapes(self, student_shapes, teacher_shapes):
        """Refuse layer shapes (``name -> shape``, batch axis first) the term cannot compare."""


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

    def check_shapes(self, student_shapes, teacher_shapes):
        """``"conv"`` (a 1×1 convolution bridges maps of equal height and width) or ``"dense"`` (vectors)."""
        (student_name,), (teacher_name,) = self.student_layers, self.teacher_layers
        student_shape, teacher_shape = tuple(student_shapes[student_name]), tuple(teacher_shapes[teacher_name])
        if len(student_shape) == len(teacher_shape) == 4 and student_shape[1:3] == teacher_shape[1:3]:
            return "conv"
        if len(student_shape) == len(teacher_shape) == 2:
            return "dense"
        raise ParamsError(
            f"{self.where}: student layer {student_name!r} gives {_shape(student_shape)} and teacher layer "
            f"{teacher_name!r} gives {_shape(teacher_shape)}; a regressor bridges channels (maps of the same "
            "height and width) or units (vectors), not different spatial sizes or ranks"
        )


@kind
class Attention(FeatureTerm):
    """Attention transfer, summed over pairs of layers (NHWC maps whose sizes divide each other)."""

    name = "attention"
    options = {"student_layer": REQUIRED, "teacher_layer": REQUIRED}
    default_weight = 1000.0

    def check_shapes(self, student_shapes, teacher_shapes):
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


@kind
class RelationalKD(FeatureTerm):
    """RKD: distance and angle relations between the samples of a batch, on one layer each.

    ``angle_triplets: N`` replaces the angle term's mean over all B³ triplets of the batch by its mean
    over N of them (fixed batch positions, so drawn anew by every shuffled batch): N·D multiply-adds
    instead of B³·D. The default, null, is the authors' full term.
    """

    name = "rkd"
    options = {"student_layer": REQUIRED, "teacher_layer": REQUIRED, "distance_weight": 25.0, "angle_weight": 50.0,
               "angle_triplets": None}
    parts = ("distance", "angle")

    def validate(self):
        super().validate()
        if len(self.student_layers) != 1:
            raise ParamsError(f"{self.where}: rkd compares one student layer with one teacher layer")
        self._positive("distance_weight", allow_zero=True)
        self._positive("angle_weight", allow_zero=True)
        triplets = self.config["angle_triplets"]
        if triplets is not None and (isinstance(triplets, bool) or not isinstance(triplets, int) or triplets < 1):
            raise ParamsError(f"{self.where}.angle_triplets: expected an integer >= 1 (triplets sampled per batch) "
                              f"or null for all of them, found {triplets!r}")


def _shape(shape):
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


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
