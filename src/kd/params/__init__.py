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
- ``tune``: how `make tune` searches a distilled model's settings on the validation split
  (:mod:`kd.tuning`); no stage reads it.

A model entry may override any ``training`` key for itself, and give its own ``seed``.

The package, in the order its modules build on each other: :mod:`~kd.params.specs` (the dataclasses
the file parses into), :mod:`~kd.params.values` (checks of single values), :mod:`~kd.params.sections`
and :mod:`~kd.params.model_sections` (one parser per section), :mod:`~kd.params.checks` (what spans
models) and :mod:`~kd.params.yaml_loader` (the YAML reader refusing a key given twice).
"""

from pathlib import Path

import yaml

from kd.errors import ParamsError
from kd.params.checks import (
    MAX_GENERATIONS, _check_chains, _check_feature_layers, _check_new_model, _check_views,
    _refuse_unexpanded_generations, expand_generations,
)
from kd.params.model_sections import (
    _parse_groups, _parse_model, _parse_mutual, _parse_peer, _parse_pretrained, _parse_training,
    _parse_views_student,
)
from kd.params.sections import (
    _parse_architectures, _parse_data, _parse_evaluate, _parse_export, _parse_layer_lists, _parse_schedules,
    _parse_tune, _parse_views,
)
from kd.params.specs import (
    DataSpec, Distillation, EvaluateSpec, ExportSpec, ImagesSpec, ModelSpec, MutualSpec, Params, Pretrained,
    SearchRange, TuneSpec, ViewsSpec,
)
from kd.params.values import _integer, _keys, _mapping
from kd.params.yaml_loader import DuplicateKey, _UniqueKeyLoader
from kd.stage_kinds import MODEL_SECTIONS

__all__ = [
    "DataSpec", "Distillation", "DuplicateKey", "EvaluateSpec", "ExportSpec", "ImagesSpec", "MAX_GENERATIONS",
    "ModelSpec", "MutualSpec", "Params", "Pretrained", "SearchRange", "TuneSpec", "ViewsSpec", "expand_generations",
    "load_params", "parse_params",
]


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


def parse_params(raw):
    """Validate a params mapping (as read from YAML) and return :class:`Params`."""
    _keys(raw, "params.yaml", required=("seed", "data", "training", "architectures", "train", "evaluate"),
          optional=("distill", "pretrained", "augmentations", "schedules", "export", "views", "distill_views",
                    "mutual", "peers", "tune"))
    seed = _integer(raw["seed"], "seed", minimum=0)
    data = _parse_data(raw["data"])
    defaults = _parse_training(raw["training"])
    architectures = _parse_architectures(raw["architectures"])
    named = {  # the sections whose entries a model refers to by name
        "architectures": architectures,
        "augmentations": _parse_layer_lists(raw.get("augmentations") or {}, "augmentations"),
        "schedules": _parse_schedules(raw.get("schedules") or {}),
    }
    named["views"] = _parse_views(raw.get("views") or {}, named["augmentations"])
    groups = _parse_groups(raw.get("mutual") or {})
    peers_of = {}  # group -> its peers, as the peers: entries name them

    models = {}
    for section in MODEL_SECTIONS:
        entries = raw.get(section) or {}
        _mapping(entries, section)
        if section == "distill":
            _refuse_unexpanded_generations(entries, models, defaults, named, raw)
        if section == "train" and not entries and not models:
            raise ParamsError("train: expected at least one model trained on labels alone (or one in pretrained:), "
                              "found none")
        for name, entry in entries.items():
            key = f"{section}.{name}"
            _check_new_model(name, key, models)
            if section == "pretrained":
                models[name] = _parse_pretrained(name, key, entry, defaults)
            elif section == "distill_views":
                models[name] = _parse_views_student(name, key, entry, defaults, named)
            elif section == "peers":
                models[name] = _parse_peer(name, key, entry, defaults, named, groups)
                peers_of.setdefault(entry["group"], []).append(name)
            else:
                models[name] = _parse_model(name, key, entry, defaults, named, distilled=section == "distill")

    mutual = _parse_mutual(groups, peers_of, defaults, models)
    _check_views(named["views"], models)
    _check_chains(models)
    _check_feature_layers(models)
    return Params(seed=seed, data=data, models=models, evaluate=_parse_evaluate(raw["evaluate"]),
                  export=_parse_export(raw.get("export"), models), views=named["views"], mutual=mutual,
                  tune=_parse_tune(raw.get("tune")))
