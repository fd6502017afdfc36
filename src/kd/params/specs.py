"""What params.yaml parses into: one frozen dataclass per section and per model entry.

Stages and modules read these, never the raw mapping; :func:`kd.params.parse_params` builds them
once every value is checked.
"""

from dataclasses import dataclass

from kd.errors import ParamsError


@dataclass(frozen=True)
class ImagesSpec:
    """How prepare decodes a folder of images."""

    size: tuple  # (height, width)
    color_mode: str  # grayscale | rgb
    test_fraction: float  # of each class, when the folder has no test/ subfolder
    skip_unreadable: bool


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split."""

    source: str
    validation_fraction: float
    limit: int | None
    num_classes: int | None = None  # declared when some classes are meant to have no examples
    images: ImagesSpec | None = None


@dataclass(frozen=True)
class EvaluateSpec:
    """How the evaluate stage measures latency."""

    latency_repeats: int
    latency_warmup: int
    throughput_batch_size: int
    throughput_repeats: int


@dataclass(frozen=True)
class ExportSpec:
    """Which models the export stage ships, and how int8 is calibrated."""

    models: tuple = ()
    representative_images: int = 500


@dataclass(frozen=True)
class Distillation:
    """What a distilled model learns from, and through which loss.

    ``teachers`` holds ``(name, weight)`` pairs, ``teacher`` (the nearest) first; ``loss``
    holds ``(term, weight)`` pairs (see :mod:`kd.losses`). ``dense``: one logit term per
    teacher (DGKD), with ``drop`` of them left out per batch; else their targets averaged.
    """

    teacher: str
    temperature: float
    soft_target_weight: float
    loss: tuple = ()
    teachers: tuple = ()
    dense: bool = False
    drop: int = 0


@dataclass(frozen=True)
class Pretrained:
    """A model trained elsewhere: its Keras file, and whether it outputs logits or probabilities."""

    path: str
    outputs: str  # logits | probabilities (a final softmax, removed to give logits)
    input_scale: float = 1.0  # what the model's inputs are, in kd's [0, 1] images: 255 for 0..255 pixels


@dataclass(frozen=True)
class ViewsSpec:
    """A teacher's views of the training set (see :mod:`kd.views`)."""

    name: str
    teacher: str
    augmentation_name: str
    augmentation: tuple  # Keras preprocessing layer configs
    count: int  # views per training image
    mixup: float | None = None  # α of the Beta(α, α) mixing coefficients (function matching); None: no mixing
    layers: tuple = ()  # teacher layers cached beside the logits, for feature terms

    @property
    def stage(self):
        return f"views@{self.name}"


@dataclass(frozen=True)
class MutualSpec:
    """A group of peers trained together (see :mod:`kd.mutual`); training settings are the group's."""

    name: str
    peers: tuple  # peer model names, in params order
    temperature: float
    soft_target_weight: float  # the others' share, as a distilled model's teachers'
    loss: tuple  # (term, weight) pairs of logit kinds, each peer's others as its teachers

    @property
    def stage(self):
        return f"mutual@{self.name}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build and train one model (or, ``pretrained``, to load it)."""

    name: str
    architecture: str
    layers: tuple  # Keras layer configs; empty for an application or a pretrained model
    epochs: int
    batch_size: int
    optimizer: dict
    schedule: dict | None  # a Keras LearningRateSchedule config, or None: constant rate
    augmentation: tuple  # Keras preprocessing layer configs; empty: no augmentation
    keep: str
    distribution: str
    precision: str
    distillation: Distillation | None
    application: dict | None = None  # {application, config, weights, input_size} from keras.applications
    backend: str = "tensorflow"  # the Keras backend it trains under
    pretrained: Pretrained | None = None
    views: ViewsSpec | None = None  # a student on views (distill_views:) learns from these
    mutual: MutualSpec | None = None  # a peer (peers:) trains with the rest of its group
    seed: int | None = None  # its own seed (initial weights, dropout, shuffling); None: params.yaml's seed

    @property
    def teacher(self):
        return self.distillation.teacher if self.distillation else None

    @property
    def stage(self):
        """The DVC stage that makes it, as dvc.yaml names it: ``train@``, ``distill@`` or ``pretrained@<name>``."""
        kind = ("pretrained" if self.pretrained else "peer" if self.mutual else "distill_views" if self.views
                else "distill" if self.distillation else "train")
        return f"{kind}@{self.name}"

    @property
    def online_teacher(self):
        """True when the teachers must run on each batch: cached logits are only valid for
        the unaugmented images they were computed on, and hold no layers for feature terms."""
        if self.distillation is None or self.views is not None:  # views hold the teacher's outputs
            return False
        return bool(self.augmentation) or any(term.features for term, _ in self.distillation.loss)


@dataclass(frozen=True)
class SearchRange:
    """One key of a search: ``values`` to choose from, or a range ``low``..``high`` (log-uniform with ``log``)."""

    key: str  # the model entry's key, dotted when nested: optimizer.config.learning_rate
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple = ()


@dataclass(frozen=True)
class TuneSpec:
    """How `make tune` searches a distilled model's settings (see :mod:`kd.tuning`)."""

    trials: int
    sampler: str  # random | grid
    seed: int  # the search's own: the same seed draws the same trials
    seeds: tuple  # model seeds the verdict trains the best and the current settings with
    space: tuple  # SearchRange per key


@dataclass(frozen=True)
class Params:
    seed: int
    data: DataSpec
    models: dict  # name -> ModelSpec, teacher-less models first, in file order
    evaluate: EvaluateSpec
    export: ExportSpec = ExportSpec()
    views: dict = None  # name -> ViewsSpec
    mutual: dict = None  # group name -> MutualSpec
    tune: TuneSpec | None = None

    def seed_of(self, spec):
        """The seed ``spec``'s model trains with: its own ``seed`` key, else the file's."""
        return self.seed if spec.seed is None else spec.seed

    def model(self, name):
        """The spec of model ``name``; a ParamsError lists the known names otherwise."""
        if name not in self.models:
            raise ParamsError(
                f"no model named {name!r} in params.yaml; models are: {', '.join(self.models)}"
            )
        return self.models[name]
