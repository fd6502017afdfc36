"""The parsers of the sections that hold models: ``training`` (every model's defaults), ``train``,
``pretrained``, ``distill``, ``distill_views``, ``peers`` and the ``mutual`` groups peers name; a
model's distillation (teachers, temperature, loss) with them."""

from dataclasses import replace

from kd.errors import ParamsError
from kd.params.specs import Distillation, ModelSpec, MutualSpec, Pretrained
from kd.params.values import _choice, _class_config, _flag, _integer, _keys, _mapping, _name, _number

TRAINING_KEYS = (
    "epochs", "batch_size", "optimizer", "schedule", "augmentation", "keep", "distribution", "precision",
)
KEEP = ("last", "best")  # which epoch's weights a model keeps: see kd.training.KeepBestEpoch
DISTRIBUTIONS = ("auto", "default", "mirrored", "multi_worker")  # see kd.devices
BACKENDS = ("tensorflow", "jax", "torch")  # Keras's backends (kd.devices.use_backend)
TRAINING_OPTIONAL = ("backend",)  # training keys with a default: backend tensorflow
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
MODEL_OPTIONAL = ("seed",)  # a model's own keys, never defaults in training: (its seed: the params' seed)
DISTILL_KEYS = ("teacher",)  # required in a distill: entry
DISTILL_OPTIONAL = ("loss", "temperature", "soft_target_weight", "teachers", "dense", "drop")
DISTILL_DEFAULTS = ("loss", "temperature", "soft_target_weight")  # keys of training: only distilled models read
MUTUAL_DISTRIBUTIONS = ("auto", "default", "mirrored")  # peers share one process's devices
MUTUAL_KEYS = tuple(k for k in TRAINING_KEYS if k != "keep") + TRAINING_OPTIONAL + ("temperature", "soft_target_weight",
                                                                                 "loss")


def _parse_training(raw):
    """The ``training:`` defaults of every model, ``backend`` filled in."""
    return {"backend": "tensorflow",
            **_keys(raw, "training", required=TRAINING_KEYS, optional=TRAINING_OPTIONAL + DISTILL_DEFAULTS)}


def _parse_model(name, key, entry, defaults, named, distilled, where=None):
    """``where(setting)``: the key a setting not in ``entry`` was written as (default ``training.<setting>``)."""
    if distilled:
        _keys(entry, key, required=("architecture",) + DISTILL_KEYS,
              optional=TRAINING_KEYS + TRAINING_OPTIONAL + MODEL_OPTIONAL + DISTILL_OPTIONAL)
    else:
        _keys(entry, key, required=("architecture",), optional=TRAINING_KEYS + TRAINING_OPTIONAL + MODEL_OPTIONAL)
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
        seed=_integer(entry["seed"], f"{key}.seed", minimum=0) if "seed" in entry else None,
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


def _parse_distillation(key, entry, settings, setting_key):
    """The distillation of a model ``entry``; ``settings`` are its keys over the ``training:`` defaults."""
    teacher = entry["teacher"]
    temperature, weight, loss = _soft_targets(key, settings, setting_key)
    if not isinstance(teacher, str):
        raise ParamsError(f"{key}.teacher: expected a model name, found {teacher!r}")
    teachers = _parse_teachers(entry.get("teachers"), f"{key}.teachers", teacher)
    dense = _flag(entry.get("dense", False), f"{key}.dense")
    drop = _integer(entry.get("drop", 0), f"{key}.drop", minimum=0)
    if drop and not (dense and drop < len(teachers)):
        raise ParamsError(f"{key}.drop: {drop} needs dense: true and fewer than the {len(teachers)} teacher(s) "
                          "in teachers (each batch keeps at least one)")
    return Distillation(teacher, temperature, weight, loss, teachers, dense, drop)


def _soft_targets(key, settings, where):
    """``(temperature, soft_target_weight, loss terms)`` of a distilled model or a mutual group;
    ``where(name)`` is the key a setting came from (its own entry, or training:)."""
    from kd.losses.kinds import parse_loss

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


def _parse_views_student(name, key, entry, defaults, named):
    """A ``distill_views:`` entry: a distilled model whose teacher and inputs come from its views."""
    _keys(entry, key, required=("architecture", "views"),
          optional=tuple(k for k in TRAINING_KEYS if k != "augmentation") + TRAINING_OPTIONAL + MODEL_OPTIONAL
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
    return replace(spec, views=views)


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


def _parse_groups(raw):
    """The ``mutual:`` groups by name, read before the peers that name them (each group's settings are
    checked by :func:`_parse_mutual`, once its peers are known)."""
    groups = _mapping(raw, "mutual")
    for group, entry in groups.items():
        _name(group, f"mutual.{group}", "group names", "folder and stage")
        _mapping(entry, f"mutual.{group}")
    return groups


def _parse_mutual(groups, peers_of, defaults, models):
    """``{group: MutualSpec}``; each peer's spec in ``models`` is given its group's. ``peers_of``: group -> the
    names of the peers that name it, in params order."""
    mutual = {}
    for group, entry in groups.items():
        peers = tuple(peers_of.get(group, ()))
        if len(peers) < 2:
            raise ParamsError(f"mutual.{group}: {len(peers)} peer(s) ({', '.join(peers) or 'none'}) name this group in "
                              "peers:; a group learns mutually with at least two")
        mutual[group] = _parse_group(group, entry, defaults, peers)
        for peer in peers:
            models[peer] = replace(models[peer], mutual=mutual[group])
    return mutual


def _parse_group(group, entry, defaults, peers):
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
