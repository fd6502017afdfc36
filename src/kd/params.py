"""Load ``params.yaml`` and validate all of it before any work starts.

Every stage calls :func:`load_params`, so a typo anywhere in the file (an unknown key
such as ``temprature``, a weight outside [0, 1], a teacher that is not a model, a
cycle in the teacher chain) stops the run with a :class:`~kd.errors.ParamsError`
naming the key, before data is read or a model trained. Keras-specific checks (does
this layer class exist?) happen in :mod:`kd.models`, which names the model and layer.

The file's sections:

- ``seed``: one integer that seeds the split, the initial weights, dropout and shuffling.
- ``data``: ``source``, ``validation_fraction``, ``limit``, ``num_classes``, ``images``.
- ``training``: defaults (``epochs``, ``batch_size``, ``optimizer``, ``schedule``,
  ``augmentation``, ``keep``, ``distribution``, ``precision``) for every model, and the
  ``loss`` of every distilled model.
- ``architectures``: named lists of Keras layer configs, or ``keras.applications`` networks
  (``{application: MobileNetV3Small, config: {...}, weights: null}``).
- ``augmentations``: named lists of Keras preprocessing layer configs, applied to training
  batches only; a model names one in its ``augmentation`` key.
- ``schedules``: named Keras learning-rate schedule configs; a model names one in its
  ``schedule`` key.
- ``train``: models trained on the labels alone (the teacher, the scratch control).
- ``pretrained``: models trained elsewhere, loaded from a Keras file (a teacher you bring).
- ``distill``: models that learn from the model named by their ``teacher`` key (and, with
  ``teachers``, from models above it in its chain), through their ``loss`` (:mod:`kd.losses`).
- ``views``: a teacher's outputs on ``count`` seeded augmented views of every training image
  (optionally mixed up), computed once by their own stage (:mod:`kd.views`).
- ``distill_views``: models that learn from views, named by their ``views`` key: each step
  sees one view of each image and the teacher's cached outputs on exactly that view.
- ``mutual``: groups of peers trained together from scratch (deep mutual learning), each peer
  learning from the labels and from the others' current predictions; ``peers``: the peers'
  models, each naming its group (:mod:`kd.mutual`).
- ``evaluate``: how latency is measured (repeats, warm-up, throughput batch size).
- ``export``: the models shipped as SavedModel, float32 and int8 TFLite files.

A model entry may override any ``training`` key for itself.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from kd.errors import ParamsError

TRAINING_KEYS = (
    "epochs", "batch_size", "optimizer", "schedule", "augmentation", "keep", "distribution", "precision",
)
KEEP = ("last", "best")  # which epoch's weights a model keeps: see kd.training.KeepBestEpoch
DISTRIBUTIONS = ("auto", "default", "mirrored", "multi_worker")  # see kd.devices
BACKENDS = ("tensorflow", "jax", "torch")  # Keras's backends (kd.devices.use_backend)
TRAINING_OPTIONAL = ("backend",)  # training keys with a default: backend tensorflow
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTILL_KEYS = ("teacher",)  # required in a distill: entry
DISTILL_OPTIONAL = ("loss", "temperature", "soft_target_weight", "teachers", "dense", "drop")
DISTILL_DEFAULTS = ("loss", "temperature", "soft_target_weight")  # keys of training: only distilled models read
VIEWS_KEYS = ("teacher", "augmentation", "count")  # required in a views: entry
VIEWS_OPTIONAL = ("mixup", "layers")
MUTUAL_DISTRIBUTIONS = ("auto", "default", "mirrored")  # peers share one process's devices
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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
class Params:
    seed: int
    data: DataSpec
    models: dict  # name -> ModelSpec, teacher-less models first, in file order
    evaluate: EvaluateSpec
    export: ExportSpec = ExportSpec()
    views: dict = None  # name -> ViewsSpec
    mutual: dict = None  # group name -> MutualSpec

    def model(self, name):
        """The spec of model ``name``; a ParamsError lists the known names otherwise."""
        if name not in self.models:
            raise ParamsError(
                f"no model named {name!r} in params.yaml; models are: {', '.join(self.models)}"
            )
        return self.models[name]


def load_params(path="params.yaml"):
    """Read and validate ``path``; return :class:`Params` or raise ParamsError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ParamsError(f"cannot read params file {path}: {error.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKey as duplicate:
        raise ParamsError(f"{duplicate.key}: given twice in {path}, on lines {duplicate.lines[0]} and "
                          f"{duplicate.lines[1]}; YAML would silently keep the last; give each key once") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return parse_params(raw)


class DuplicateKey(yaml.YAMLError):
    """A mapping of the YAML file gives one key twice (``key``: its dotted path; ``lines``: both, from 1)."""

    def __init__(self, key, lines):
        super().__init__(f"{key}: given twice, on lines {lines[0]} and {lines[1]}")
        self.key, self.lines = key, lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice (plain YAML keeps the last silently).

    Keys merged in with ``<<: *anchor`` may be overridden, as YAML intends; keys written out may not.
    """

    def construct_document(self, node):
        self._paths = {}
        _note_paths(node, "", self._paths)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader refuses it below
                    continue
                if first is not key_node:
                    parent = self._paths.get(id(node), "")
                    raise DuplicateKey(f"{parent}.{key}" if parent else str(key),
                                       (first.start_mark.line + 1, key_node.start_mark.line + 1))
        return super().construct_mapping(node, deep=deep)


def _note_paths(node, path, paths):
    """``paths[id(node)]``: the dotted path (``distill.student``, ``architectures.fc[1]``) of each node under ``node``."""
    if id(node) in paths:  # an alias: named where it first appears
        return
    paths[id(node)] = path
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _note_paths(value_node, f"{path}.{key}" if path else key, paths)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _note_paths(item, f"{path}[{position}]", paths)


def parse_params(raw):
    """Validate a params mapping (as read from YAML) and return :class:`Params`."""
    _keys(raw, "params.yaml", required=("seed", "data", "training", "architectures", "train", "evaluate"),
          optional=("distill", "pretrained", "augmentations", "schedules", "export", "views", "distill_views",
                    "mutual", "peers"))
    seed = _integer(raw["seed"], "seed", minimum=0)
    data = _parse_data(raw["data"])
    defaults = {"backend": "tensorflow",
                **_keys(raw["training"], "training", required=TRAINING_KEYS, optional=TRAINING_OPTIONAL + DISTILL_DEFAULTS)}
    architectures = _parse_architectures(raw["architectures"])
    named = {  # the sections whose entries a model refers to by name
        "architectures": architectures,
        "augmentations": _parse_layer_lists(raw.get("augmentations") or {}, "augmentations"),
        "schedules": _parse_schedules(raw.get("schedules") or {}),
    }
    named["views"] = _parse_views(raw.get("views") or {}, named["augmentations"])
    groups = _mapping(raw.get("mutual") or {}, "mutual")
    for group, entry in groups.items():  # before the peers that name them
        if not isinstance(group, str) or not MODEL_NAME.match(group):
            raise ParamsError(f"mutual.{group}: group names must start with a letter and hold only letters, digits "
                              "and '_' (they become folder and stage names)")
        _mapping(entry, f"mutual.{group}")
    peers_of = {}  # group -> its peers, as the peers: entries name them

    models = {}
    for section in ("pretrained", "train", "peers", "distill", "distill_views"):
        entries = raw.get(section) or {}
        _mapping(entries, section)
        if section == "distill":
            _refuse_unexpanded_generations(entries, models, defaults, named, raw)
        if section == "train" and not entries and not models:
            raise ParamsError("train: expected at least one model trained on labels alone (or one in pretrained:), "
                              "found none")
        for name, entry in entries.items():
            key = f"{section}.{name}"
            if not isinstance(name, str) or not MODEL_NAME.match(name):
                raise ParamsError(
                    f"{key}: model names must start with a letter and hold only letters, digits "
                    "and '_' (they become file and stage names)"
                )
            if name in models:
                raise ParamsError(f"{key}: model {name!r} is defined twice (in train, distill or pretrained)")
            if section == "pretrained":
                models[name] = _parse_pretrained(name, key, entry, defaults)
            elif section == "distill_views":
                models[name] = _parse_views_student(name, key, entry, defaults, named)
            elif section == "peers":
                models[name] = _parse_peer(name, key, entry, defaults, named, groups)
                peers_of.setdefault(entry["group"], []).append(name)
            else:
                models[name] = _parse_model(name, key, entry, defaults, named, distilled=section == "distill")

    mutual = {}
    for group, entry in groups.items():
        peers = tuple(peers_of.get(group, ()))
        if len(peers) < 2:
            raise ParamsError(f"mutual.{group}: {len(peers)} peer(s) ({', '.join(peers) or 'none'}) name this group in "
                              "peers:; a group learns mutually with at least two")
        mutual[group] = _parse_mutual(group, entry, defaults, peers)
        import dataclasses

        for peer in peers:
            models[peer] = dataclasses.replace(models[peer], mutual=mutual[group])
    for views in named["views"].values():
        if views.teacher not in models:
            raise ParamsError(f"views.{views.name}.teacher: {views.teacher!r} is not a model "
                              f"(models: {', '.join(models)})")
        if views.name in models:
            raise ParamsError(f"views.{views.name}: the name is also a model's; give the views their own name")
    _check_chains(models)
    _check_feature_layers(models)
    return Params(seed=seed, data=data, models=models, evaluate=_parse_evaluate(raw["evaluate"]),
                  export=_parse_export(raw.get("export"), models), views=named["views"], mutual=mutual)


MUTUAL_KEYS = tuple(k for k in TRAINING_KEYS if k != "keep") + TRAINING_OPTIONAL + ("temperature", "soft_target_weight",
                                                                                 "loss")


def _refuse_unexpanded_generations(entries, models, defaults, named, raw):
    """Born-again generations are k models, so k params entries (DVC makes one stage per entry).

    The entry is checked first, every key as a distilled model's, so that the entries `make generations`
    writes are valid and a bad value is named as the user wrote it (``distill.born.temperature``).
    """
    for name, entry in entries.items():
        if isinstance(entry, dict) and "generations" in entry:
            key = f"distill.{name}"
            expanded = list(expand_generations({name: entry}))  # the count and options checked
            base = {k: v for k, v in entry.items() if k not in ("generations", "ensemble")}
            _parse_model(name, key, base, defaults, named, distilled=True)
            known = [model for section in ("pretrained", "train", "peers", "distill", "distill_views")
                     for model in (raw.get(section) or {})]
            if base["teacher"] not in known or base["teacher"] == name:
                raise ParamsError(f"{key}.teacher: {base['teacher']!r} is not a model (models: "
                                  f"{', '.join(map(str, (m for m in known if m != name)))})")
            for generation in expanded:
                if generation in models or generation in entries:
                    raise ParamsError(f"distill.{name}.generations: generation {generation!r} would collide with "
                                      f"model {generation!r}; rename one of them")
            raise ParamsError(f"distill.{name}.generations: {len(expanded)} generation(s) are {len(expanded)} models, "
                              f"each a stage, and DVC makes one stage per params entry: run `make generations` to "
                              f"write {', '.join(expanded)} into params.yaml")


MAX_GENERATIONS = 100  # born-again chains are a few generations long; each one is trained in turn


def expand_generations(entries, section="distill"):
    """``entries`` (a ``distill:`` mapping) with each ``generations: k`` entry replaced by its chain
    ``<name>_g1`` … ``<name>_gk`` (see tools/generations.py); other entries unchanged, in order."""
    expanded = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "generations" not in entry:
            expanded[name] = entry
            continue
        key = f"{section}.{name}"
        count = _integer(entry["generations"], f"{key}.generations", minimum=1, maximum=MAX_GENERATIONS,
                         why=" (each generation is a model and a stage)")
        if "teacher" not in entry:
            raise ParamsError(f"{key}: missing key(s) teacher (the first generation's)")
        ensemble = entry.get("ensemble", False)
        if not isinstance(ensemble, bool):
            raise ParamsError(f"{key}.ensemble: expected true or false, found {ensemble!r}")
        if "teachers" in entry:
            raise ParamsError(f"{key}.teachers: generations teach each other; give one teacher (the first "
                              "generation's), and ensemble: true for the last to learn from all earlier ones")
        base = {k: v for k, v in entry.items() if k not in ("generations", "ensemble")}
        names = [f"{name}_g{index}" for index in range(1, count + 1)]
        for generation in names:
            if generation in entries:
                raise ParamsError(f"{key}.generations: generation {generation!r} would collide with "
                                  f"{section}.{generation}; rename one of them")
        for index, generation in enumerate(names):
            expanded[generation] = {**base, "teacher": base["teacher"] if index == 0 else names[index - 1]}
        if ensemble and count > 1:
            expanded[names[-1]]["teachers"] = list(reversed(names[:-1]))
    return expanded


def _parse_mutual(group, entry, defaults, peers):
    """A ``mutual:`` group: how its peers learn from each other (training settings are checked per peer)."""
    key = f"mutual.{group}"
    _keys(entry, key, optional=MUTUAL_KEYS)
    settings = {**defaults, **entry}

    def where(name):
        return f"{key}.{name}" if name in entry else f"training.{name}"

    temperature, weight, loss = _soft_targets(key, settings, where)
    for term, _ in loss:
        if term.features:
            raise ParamsError(f"{term.where}: {term.name} reads a teacher's layers; peers learn from each other's "
                              "logits (hinton, dkd, dist)")
    return MutualSpec(group, peers, temperature, weight, loss)


def _parse_peer(name, key, entry, defaults, named, groups):
    """A ``peers:`` entry: a model trained with its group, on the group's training settings."""
    _keys(entry, key, required=("architecture", "group"))
    group = entry["group"]
    if not isinstance(group, str) or group not in groups:
        raise ParamsError(f"{key}.group: {group!r} is not a group of mutual: (known: {', '.join(map(str, groups)) or 'none'})")
    group_entry = groups[group] or {}
    settings = {k: v for k, v in group_entry.items() if k in TRAINING_KEYS + TRAINING_OPTIONAL}
    if "keep" in group_entry:
        raise ParamsError(f"mutual.{group}: unknown key(s) keep; peers keep their last epoch's weights")

    def where(setting):  # the key the group's setting was written as: its own, or training:'s
        return f"mutual.{group}.{setting}" if setting in group_entry else f"training.{setting}"

    distribution = settings.get("distribution", defaults["distribution"])
    if distribution not in MUTUAL_DISTRIBUTIONS:
        raise ParamsError(f"{where('distribution')}: {distribution!r}; peers train together in one process: "
                          f"expected one of {', '.join(MUTUAL_DISTRIBUTIONS)}")
    backend = _choice(settings.get("backend", defaults["backend"]), where("backend"), BACKENDS)
    if distribution == "mirrored" and backend == "torch":
        raise ParamsError(f"{where('distribution')}: mirrored needs tensorflow or jax; the group trains under "
                          f"torch ({where('backend')}), on one device in kd")
    # The group's settings are the peer's, as the training: defaults are a model's.
    return _parse_model(name, key, {"architecture": entry["architecture"]}, {**defaults, **settings, "keep": "last"},
                        named, distilled=False, where=where)


def _parse_views(raw, augmentations):
    """``{name: ViewsSpec}`` of the ``views:`` section (teachers are checked once models are known)."""
    _mapping(raw, "views")
    views = {}
    for name, entry in raw.items():
        key = f"views.{name}"
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            raise ParamsError(f"{key}: names must start with a letter and hold only letters, digits and '_' "
                              "(they become folder and stage names)")
        _keys(entry, key, required=VIEWS_KEYS, optional=VIEWS_OPTIONAL)
        if not isinstance(entry["teacher"], str):
            raise ParamsError(f"{key}.teacher: expected a model name, found {entry['teacher']!r}")
        augmentation = entry["augmentation"]
        if not isinstance(augmentation, str) or augmentation not in augmentations:
            raise ParamsError(f"{key}.augmentation: {augmentation!r} is not in augmentations (known: "
                              f"{', '.join(augmentations) or 'none defined'})")
        count = _integer(entry["count"], f"{key}.count", minimum=1)
        mixup = entry.get("mixup")
        if mixup is not None:
            mixup = _number(mixup, f"{key}.mixup", "α > 0 (mixing coefficients from Beta(α, α)) or null for "
                            "no mixing", holds=lambda value: value > 0)
        layers = entry.get("layers") or []
        if not isinstance(layers, list) or not all(isinstance(n, str) for n in layers):
            raise ParamsError(f"{key}.layers: expected a list of the teacher's layer names, found {layers!r}")
        twice = sorted({n for n in layers if layers.count(n) > 1})
        if twice:
            raise ParamsError(f"{key}.layers: {', '.join(map(repr, twice))} listed twice; list each layer once")
        views[name] = ViewsSpec(name, entry["teacher"], augmentation, augmentations[augmentation], count, mixup,
                                tuple(layers))
    return views


def _parse_views_student(name, key, entry, defaults, named):
    """A ``distill_views:`` entry: a distilled model whose teacher and inputs come from its views."""
    _keys(entry, key, required=("architecture", "views"),
          optional=tuple(k for k in TRAINING_KEYS if k != "augmentation") + TRAINING_OPTIONAL
          + ("loss", "temperature", "soft_target_weight", "teacher"))
    views = entry["views"]
    if not isinstance(views, str) or views not in named["views"]:
        raise ParamsError(f"{key}.views: {views!r} is not in views (known: {', '.join(named['views']) or 'none defined'})")
    views = named["views"][views]
    if entry.get("teacher", views.teacher) != views.teacher:
        raise ParamsError(f"{key}.teacher: {entry['teacher']!r}, but views {views.name!r} are of teacher "
                          f"{views.teacher!r}; a student learns from views of its own teacher")
    spec = _parse_model(name, key, {**{k: v for k, v in entry.items() if k != "views"}, "teacher": views.teacher},
                        {**defaults, "augmentation": None}, named, distilled=True)
    for term, _ in spec.distillation.loss:
        if term.features:
            missing = [layer for layer in term.teacher_layers if layer not in views.layers]
            if missing:
                raise ParamsError(f"{term.where}.teacher_layer: {', '.join(map(repr, missing))} is not cached with "
                                  f"views {views.name!r}; add it to views.{views.name}.layers")
        if views.mixup is not None and term.name == "dkd":
            raise ParamsError(f"{term.where}: dkd separates the target class, which a mixed image does not have "
                              f"(views.{views.name}.mixup); use a loss without it, or views without mixup")
    import dataclasses

    return dataclasses.replace(spec, views=views)


def _parse_export(raw, models):
    if raw is None:
        return ExportSpec()
    _keys(raw, "export", required=("models", "representative_images"))
    names = raw["models"] or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ParamsError(f"export.models: expected a list of model names, found {raw['models']!r}")
    for name in names:
        if name not in models:
            raise ParamsError(f"export.models: {name!r} is not a model (models: {', '.join(models)})")
    if len(set(names)) != len(names):
        raise ParamsError(f"export.models: {names} names a model twice")
    count = _integer(raw["representative_images"], "export.representative_images", minimum=1)
    return ExportSpec(models=tuple(names), representative_images=count)


def _parse_evaluate(raw):
    _keys(raw, "evaluate", required=("latency_repeats", "latency_warmup", "throughput_batch_size", "throughput_repeats"))
    return EvaluateSpec(
        latency_repeats=_integer(raw["latency_repeats"], "evaluate.latency_repeats", minimum=1),
        latency_warmup=_integer(raw["latency_warmup"], "evaluate.latency_warmup", minimum=0),
        throughput_batch_size=_integer(raw["throughput_batch_size"], "evaluate.throughput_batch_size", minimum=1),
        throughput_repeats=_integer(raw["throughput_repeats"], "evaluate.throughput_repeats", minimum=1),
    )


def _parse_data(raw):
    from kd.data import PACKAGED, SOURCES_DIR

    _keys(raw, "data", required=("source", "validation_fraction", "limit"), optional=("num_classes", "images"))
    source = raw["source"]
    if not isinstance(source, str) or not source:
        raise ParamsError(f"data.source: expected a non-empty string, found {source!r}")
    if source not in PACKAGED:
        parts = Path(source).parts
        if Path(source).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != SOURCES_DIR:
            raise ParamsError(
                f"data.source: {source!r} is not one of {', '.join(PACKAGED)} nor a path under {SOURCES_DIR}/; put your "
                f"data (a .npz file or a folder of class folders) in {SOURCES_DIR}/, which the prepare stage depends "
                f"on, so that changing it reruns the pipeline (e.g. {SOURCES_DIR}/{Path(source).name})"
            )
    fraction = _number(raw["validation_fraction"], "data.validation_fraction", "a number in (0, 1)",
                       holds=lambda value: 0 < value < 1)
    limit = raw["limit"]
    if limit is not None:
        limit = _integer(limit, "data.limit", minimum=2)
    num_classes = raw.get("num_classes")
    if num_classes is not None:
        num_classes = _integer(num_classes, "data.num_classes", minimum=2)
    images = _parse_images(raw["images"]) if raw.get("images") is not None else None
    return DataSpec(source=source, validation_fraction=fraction, limit=limit, num_classes=num_classes, images=images)


def _parse_images(raw):
    _keys(raw, "data.images", required=("size", "color_mode"), optional=("test_fraction", "skip_unreadable"))
    size = raw["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                and v > 0 for v in size)):
        raise ParamsError(f"data.images.size: expected [height, width] in pixels, found {size!r}")
    color_mode = _choice(raw["color_mode"], "data.images.color_mode", ("grayscale", "rgb"))
    fraction = _number(raw.get("test_fraction", 0.2), "data.images.test_fraction", "a number in (0, 1)",
                       holds=lambda value: 0 < value < 1)
    skip = raw.get("skip_unreadable", False)
    if not isinstance(skip, bool):
        raise ParamsError(f"data.images.skip_unreadable: expected true or false, found {skip!r}")
    return ImagesSpec(size=tuple(size), color_mode=color_mode, test_fraction=fraction, skip_unreadable=skip)


def _parse_layer_lists(raw, section):
    """``{name: [layer config, ...]}``: the shape of ``architectures`` and ``augmentations``."""
    _mapping(raw, section)
    lists = {}
    for name, layers in raw.items():
        key = f"{section}.{name}"
        if not isinstance(layers, list):
            raise ParamsError(f"{key}: expected a list of layer configs, found {type(layers).__name__}")
        for position, layer in enumerate(layers):
            _class_config(layer, f"{key}[{position}]")
        lists[name] = tuple(layers)
    return lists


def _parse_schedules(raw):
    _mapping(raw, "schedules")
    for name, schedule in raw.items():
        _class_config(schedule, f"schedules.{name}")
    return dict(raw)


def _class_config(value, key):
    """A ``{class_name, config}`` mapping, the format Keras serializes objects in."""
    _keys(value, key, required=("class_name",), optional=("config",))
    if not isinstance(value["class_name"], str):
        raise ParamsError(f"{key}.class_name: expected a Keras class name, found {value['class_name']!r}")
    if "config" in value:
        _mapping(value["config"], f"{key}.config")
    return value


def _parse_model(name, key, entry, defaults, named, distilled, where=None):
    """``where(setting)``: the key a setting not in ``entry`` was written as (default ``training.<setting>``)."""
    if distilled:
        _keys(entry, key, required=("architecture",) + DISTILL_KEYS,
              optional=TRAINING_KEYS + TRAINING_OPTIONAL + DISTILL_OPTIONAL)
    else:
        _keys(entry, key, required=("architecture",), optional=TRAINING_KEYS + TRAINING_OPTIONAL)
    own = TRAINING_KEYS + TRAINING_OPTIONAL + (DISTILL_DEFAULTS if distilled else ())
    settings = {**defaults, **{k: entry[k] for k in own if k in entry}}

    def setting_key(setting):  # where the value came from: the model's entry or the defaults
        if setting in entry:
            return f"{key}.{setting}"
        return where(setting) if where is not None else f"training.{setting}"

    def named_entry(value, where, section, nullable):
        """The entry of section ``section`` that ``value`` names (None for null, if allowed)."""
        if value is None and nullable:
            return None
        if not isinstance(value, str) or value not in named[section]:
            known = ", ".join(map(str, named[section])) or "none defined"
            raise ParamsError(
                f"{where}: {value!r} is not in {section} (known: {known})" + ("; null for none" if nullable else "")
            )
        return named[section][value]

    architecture = named_entry(entry["architecture"], f"{key}.architecture", "architectures", nullable=False)
    layers, application = (architecture, None) if isinstance(architecture, tuple) else ((), architecture)
    optimizer = _class_config(settings["optimizer"], setting_key("optimizer"))
    schedule = named_entry(settings["schedule"], setting_key("schedule"), "schedules", nullable=True)
    augmentation = named_entry(settings["augmentation"], setting_key("augmentation"), "augmentations", nullable=True)
    distillation = _parse_distillation(key, entry, settings, setting_key) if distilled else None
    backend = _choice(settings["backend"], setting_key("backend"), BACKENDS)
    distribution = _choice(settings["distribution"], setting_key("distribution"), DISTRIBUTIONS)
    if distribution == "multi_worker" and backend != "tensorflow":
        raise ParamsError(f"{setting_key('distribution')}: multi_worker is TensorFlow's MultiWorkerMirroredStrategy, "
                          f"but model {name!r} trains under {backend} ({setting_key('backend')}); use tensorflow, "
                          "or one machine")
    if distribution == "mirrored" and backend == "torch":
        raise ParamsError(f"{setting_key('distribution')}: mirrored needs tensorflow or jax; model {name!r} trains "
                          f"under torch ({setting_key('backend')}), on one device in kd")
    return ModelSpec(
        name=name,
        architecture=entry["architecture"],
        layers=layers,
        epochs=_integer(settings["epochs"], setting_key("epochs"), minimum=1),
        batch_size=_integer(settings["batch_size"], setting_key("batch_size"), minimum=1),
        optimizer=optimizer,
        schedule=schedule,
        augmentation=augmentation or (),
        keep=_choice(settings["keep"], setting_key("keep"), KEEP),
        distribution=distribution,
        precision=_choice(settings["precision"], setting_key("precision"), PRECISIONS),
        distillation=distillation,
        application=application,
        backend=backend,
    )


def _parse_pretrained(name, key, entry, defaults):
    """A model from a Keras file: validated when its stage loads it (kd.pretrained)."""
    _keys(entry, key, required=("path", "outputs"), optional=("input_scale",))
    path = entry["path"]
    if not isinstance(path, str) or not path.endswith((".keras", ".h5")):
        raise ParamsError(f"{key}.path: expected a path to a .keras or .h5 file, found {path!r}")
    outputs = _choice(entry["outputs"], f"{key}.outputs", ("logits", "probabilities"))
    scale = _number(entry.get("input_scale", 1.0), f"{key}.input_scale",
                    "a number > 0 (255 for a model of 0..255 pixels)", holds=lambda value: value > 0)
    return ModelSpec(
        name=name, architecture=f"file {path}", layers=(), epochs=1, batch_size=defaults["batch_size"],
        optimizer=defaults["optimizer"], schedule=None, augmentation=(), keep="last", distribution="default",
        precision="float32", distillation=None, pretrained=Pretrained(path=path, outputs=outputs, input_scale=scale),
    )


APPLICATION_KEYS = ("application", "config", "weights", "input_size")


def _parse_architectures(raw):
    """``{name: layer configs (tuple) or an application (dict)}``."""
    _mapping(raw, "architectures")
    lists = _parse_layer_lists({n: v for n, v in raw.items() if not isinstance(v, dict)}, "architectures")
    architectures = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            architectures[name] = lists[name]
            continue
        key = f"architectures.{name}"
        _keys(value, key, required=("application",), optional=APPLICATION_KEYS[1:])
        if not isinstance(value["application"], str):
            raise ParamsError(f"{key}.application: expected a keras.applications name, found {value['application']!r}")
        _mapping(value.get("config") or {}, f"{key}.config")
        weights = value.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise ParamsError(f"{key}.weights: expected null (random initial weights) or a path to a weights file, "
                              f"found {weights!r}")
        size = value.get("input_size")
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ParamsError(f"{key}.input_size: expected [height, width] or null, found {size!r}")
        architectures[name] = {"application": value["application"], "config": dict(value.get("config") or {}),
                               "weights": weights, "input_size": tuple(size) if size else None}
    return architectures


def _parse_distillation(key, entry, settings, setting_key):
    """The distillation of a model ``entry``; ``settings`` are its keys over the ``training:`` defaults."""
    teacher = entry["teacher"]
    temperature, weight, loss = _soft_targets(key, settings, setting_key)
    if not isinstance(teacher, str):
        raise ParamsError(f"{key}.teacher: expected a model name, found {teacher!r}")
    teachers = _parse_teachers(entry.get("teachers"), f"{key}.teachers", teacher)
    dense = entry.get("dense", False)
    if not isinstance(dense, bool):
        raise ParamsError(f"{key}.dense: expected true or false, found {dense!r}")
    drop = _integer(entry.get("drop", 0), f"{key}.drop", minimum=0)
    if drop and not (dense and drop < len(teachers)):
        raise ParamsError(f"{key}.drop: {drop} needs dense: true and fewer than the {len(teachers)} teacher(s) "
                          "in teachers (each batch keeps at least one)")
    return Distillation(teacher, temperature, weight, loss, teachers, dense, drop)


def _soft_targets(key, settings, where):
    """``(temperature, soft_target_weight, loss terms)`` of a distilled model or a mutual group;
    ``where(name)`` is the key a setting came from (its own entry, or training:)."""
    from kd.losses import parse_loss

    for name in ("temperature", "soft_target_weight"):
        if name not in settings:
            raise ParamsError(f"{key}: missing key {name} (give it here, or for every distilled model in training:)")
    # Checked here, under the key it was written as: the loss's terms inherit it, under the loss's key.
    temperature = _number(settings["temperature"], where("temperature"), "a number > 0", holds=lambda value: value > 0)
    weight = _number(settings["soft_target_weight"], where("soft_target_weight"), "a number in [0, 1]",
                     holds=lambda value: 0 <= value <= 1)
    return temperature, weight, parse_loss(settings.get("loss", "hinton"), where("loss"), temperature)


def _parse_teachers(raw, key, teacher):
    """``((name, weight), ...)``, ``teacher`` first: from a list of names or a name -> weight mapping."""
    if raw is None:
        return ((teacher, 1.0),)
    if isinstance(raw, list):
        raw = {name: 1.0 for name in raw} if all(isinstance(n, str) for n in raw) and len(set(raw)) == len(raw) \
            else raw
    if not isinstance(raw, dict) or not raw:
        raise ParamsError(f"{key}: expected a list of model names or a mapping of model name to weight, "
                          f"found {raw!r}")
    if teacher not in raw:
        raise ParamsError(f"{key}: {', '.join(map(str, raw))} does not include the model's teacher {teacher!r}")
    weights = {}
    for name, weight in raw.items():
        weights[name] = _number(weight, f"{key}.{name}", "a weight >= 0", holds=lambda value: value >= 0)
    if not any(weights.values()):
        raise ParamsError(f"{key}: every teacher has weight 0; give at least one a weight > 0")
    return ((teacher, weights.pop(teacher)),) + tuple(weights.items())


def _check_feature_layers(models):
    """Layers that feature terms name must exist in the student's and the teacher's architectures."""
    from kd.models import layer_names

    for spec in models.values():
        if spec.distillation is None:
            continue
        teacher = models[spec.teacher]
        for term, _ in spec.distillation.loss:
            if not term.features:
                continue
            for option, model, names in (("student_layer", spec, term.student_layers),
                                         ("teacher_layer", teacher, term.teacher_layers)):
                if not model.layers:  # an application or a file: its layers are checked when it is built or loaded
                    continue
                known = layer_names(model.layers)
                missing = [name for name in names if name not in known]
                if missing:
                    raise ParamsError(
                        f"{term.where}.{option}: {', '.join(map(repr, missing))} is not a layer of architecture "
                        f"{model.architecture} (model {model.name!r}); its layers: {', '.join(known)} "
                        "(name a layer with `name` in its config)"
                    )


def _check_chains(models):
    """Every teacher must be a model, and following teachers must end at a teacher-less one."""
    for name, spec in models.items():
        seen = [name]
        while spec.teacher is not None:
            if spec.teacher not in models:
                raise ParamsError(
                    f"distill.{spec.name}.teacher: {spec.teacher!r} is not a model "
                    f"(models: {', '.join(models)})"
                )
            if spec.teacher in seen:
                cycle = " -> ".join(seen + [spec.teacher])
                raise ParamsError(f"distill.{name}.teacher: the teacher chain has a cycle: {cycle}")
            seen.append(spec.teacher)
            spec = models[spec.teacher]
    for name, spec in models.items():
        if spec.distillation is None:
            continue
        chain, above = [], models[spec.teacher]
        while above.teacher is not None:
            chain.append(above.teacher)
            above = models[above.teacher]
        for other, _ in spec.distillation.teachers[1:]:
            if other not in chain:
                raise ParamsError(
                    f"distill.{name}.teachers: {other!r} is not above {spec.teacher!r} in its teacher chain "
                    f"({' -> '.join([spec.teacher] + chain)}); dvc.yaml gives a stage one teacher edge (DVC cannot "
                    "template a list of dependencies), so other teachers must come before it in the chain"
                )


def _mapping(value, key):
    if not isinstance(value, dict):
        raise ParamsError(f"{key}: expected a mapping, found {type(value).__name__}")
    return value


def _keys(value, key, required=(), optional=()):
    """Check that mapping ``value`` has all ``required`` keys and nothing unknown."""
    _mapping(value, key)
    missing = [k for k in required if k not in value]
    if missing:
        raise ParamsError(f"{key}: missing key(s) {', '.join(missing)}")
    allowed = set(required) | set(optional)
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ParamsError(
            f"{key}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"expected {', '.join(list(required) + list(optional))}"
        )
    return value


def _integer(value, key, minimum, maximum=None, why=""):
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}{why}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamsError(f"{key}: expected {expected}, found {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ParamsError(f"{key}: expected {expected}, found {value}")
    return value


def _choice(value, key, allowed):
    if value not in allowed:
        raise ParamsError(f"{key}: expected one of {', '.join(allowed)}, found {value!r}")
    return value


def _number(value, key, expected="a finite number", holds=None):
    """``value`` as a float: an int or a float (never a bool), finite, for which ``holds`` (if given) is
    true; else ``<key>: expected <expected>, found <value>`` (NaN and infinities are never accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{key}: expected a number, found {value!r}")
    value = float(value)
    if not math.isfinite(value) or (holds is not None and not holds(value)):
        raise ParamsError(f"{key}: expected {expected}, found {value}")
    return value
