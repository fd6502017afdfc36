"""The parsers of the sections that are not models: ``data``, ``architectures``, ``augmentations``,
``schedules``, ``views``, ``evaluate`` and ``export`` (models: :mod:`kd.params.model_sections`)."""

from pathlib import Path

from kd.errors import ParamsError
from kd.params.specs import DataSpec, EvaluateSpec, ExportSpec, ImagesSpec, SearchRange, TuneSpec, ViewsSpec
from kd.params.values import (
    NAME, _choice, _class_config, _flag, _height_width, _integer, _keys, _mapping, _model, _name, _number,
)

APPLICATION_KEYS = ("application", "config", "weights", "input_size")
VIEWS_KEYS = ("teacher", "augmentation", "count")  # required in a views: entry
VIEWS_OPTIONAL = ("mixup", "layers")


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
    size = _height_width(raw["size"], "data.images.size", "[height, width] in pixels")
    color_mode = _choice(raw["color_mode"], "data.images.color_mode", ("grayscale", "rgb"))
    fraction = _number(raw.get("test_fraction", 0.2), "data.images.test_fraction", "a number in (0, 1)",
                       holds=lambda value: 0 < value < 1)
    skip = _flag(raw.get("skip_unreadable", False), "data.images.skip_unreadable")
    return ImagesSpec(size=size, color_mode=color_mode, test_fraction=fraction, skip_unreadable=skip)


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
        if size is not None:
            size = _height_width(size, f"{key}.input_size", "[height, width] or null")
        architectures[name] = {"application": value["application"], "config": dict(value.get("config") or {}),
                               "weights": weights, "input_size": size}
    return architectures


def _parse_schedules(raw):
    _mapping(raw, "schedules")
    for name, schedule in raw.items():
        _class_config(schedule, f"schedules.{name}")
    return dict(raw)


def _parse_views(raw, augmentations):
    """``{name: ViewsSpec}`` of the ``views:`` section (teachers are checked once models are known)."""
    _mapping(raw, "views")
    views = {}
    for name, entry in raw.items():
        key = f"views.{name}"
        _name(name, key, "names", "folder and stage")
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


def _parse_evaluate(raw):
    _keys(raw, "evaluate", required=("latency_repeats", "latency_warmup", "throughput_batch_size", "throughput_repeats"))
    return EvaluateSpec(
        latency_repeats=_integer(raw["latency_repeats"], "evaluate.latency_repeats", minimum=1),
        latency_warmup=_integer(raw["latency_warmup"], "evaluate.latency_warmup", minimum=0),
        throughput_batch_size=_integer(raw["throughput_batch_size"], "evaluate.throughput_batch_size", minimum=1),
        throughput_repeats=_integer(raw["throughput_repeats"], "evaluate.throughput_repeats", minimum=1),
    )


def _parse_export(raw, models):
    if raw is None:
        return ExportSpec()
    _keys(raw, "export", required=("models", "representative_images"))
    names = raw["models"] or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ParamsError(f"export.models: expected a list of model names, found {raw['models']!r}")
    for name in names:
        _model(name, "export.models", models)
    if len(set(names)) != len(names):
        raise ParamsError(f"export.models: {names} names a model twice")
    count = _integer(raw["representative_images"], "export.representative_images", minimum=1)
    return ExportSpec(models=tuple(names), representative_images=count)


SAMPLERS = ("random", "grid")


def _parse_tune(raw):
    """The ``tune:`` section: the search `make tune` runs (keys are checked against the model tuned, by
    :mod:`kd.tuning`, which knows which model that is)."""
    if raw is None:
        return None
    _keys(raw, "tune", required=("trials", "sampler", "seed", "seeds", "space"))
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ParamsError(f"tune.seeds: expected a list of model seeds for the verdict, found {seeds!r}")
    for position, seed in enumerate(seeds):
        _integer(seed, f"tune.seeds[{position}]", minimum=0)
    if len(set(seeds)) != len(seeds):
        raise ParamsError(f"tune.seeds: {seeds} names a seed twice")
    space = _mapping(raw["space"], "tune.space")
    if not space:
        raise ParamsError("tune.space: expected at least one key to search, found none")
    return TuneSpec(
        trials=_integer(raw["trials"], "tune.trials", minimum=1),
        sampler=_choice(raw["sampler"], "tune.sampler", SAMPLERS),
        seed=_integer(raw["seed"], "tune.seed", minimum=0),
        seeds=tuple(seeds),
        space=tuple(_parse_search_range(key, entry) for key, entry in space.items()),
    )


def _parse_search_range(name, entry):
    key = f"tune.space.{name}"
    if not isinstance(name, str) or not all(NAME.match(part) for part in name.split(".")):
        raise ParamsError(f"{key}: expected a key of the model's entry (dotted when nested), found {name!r}")
    if isinstance(entry, dict) and "values" in entry:
        _keys(entry, key, required=("values",))
        values = entry["values"]
        if not isinstance(values, list) or not values:
            raise ParamsError(f"{key}.values: expected a non-empty list of values to try, found {values!r}")
        return SearchRange(name, values=tuple(values))
    _keys(entry, key, required=("low", "high"), optional=("log",))
    low = _number(entry["low"], f"{key}.low")
    high = _number(entry["high"], f"{key}.high")
    if low > high:
        raise ParamsError(f"{key}: low {entry['low']} is above high {entry['high']}; the range is empty")
    log = _flag(entry.get("log", False), f"{key}.log")
    if log and low <= 0:
        raise ParamsError(f"{key}.low: a log range needs low > 0, found {entry['low']}")
    return SearchRange(name, low=low, high=high, log=log)
