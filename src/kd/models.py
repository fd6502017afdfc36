"""Build what params.yaml describes: models, augmentations, optimizers with their schedules.

An architecture in params.yaml is a list of ``{class_name, config}`` entries, the
format ``keras.layers.serialize`` writes, so any built-in Keras layer works without a
registry of our own; or a network of ``keras.applications`` by name, with its config.
The builder adds the input (shape from the data) and the output layer: a ``Dense`` with
one unit per class and no activation, so every model gives logits and the number of
classes always comes from the data. Augmentations and learning-rate schedules are Keras
configs in the same format.
"""

import inspect
import re
from pathlib import Path

from kd.errors import ParamsError

LOGITS = "logits"  # the name of the output layer the builder adds


def build_model(spec, input_shape, num_classes):
    """Build the uncompiled ``keras.Sequential`` for ``spec`` (a :class:`kd.params.ModelSpec`).

    A layer class Keras does not know, or a config it rejects, raises ParamsError naming
    the model, the architecture and the layer's position.
    """
    import keras

    if spec.application is not None:
        return _build_application(spec, tuple(input_shape), num_classes)
    model = keras.Sequential(name=spec.name)
    model.add(keras.Input(shape=tuple(input_shape), name="input_layer"))
    for position, (layer_config, name) in enumerate(zip(spec.layers, layer_names(spec.layers)[:-1], strict=True)):
        where = f"architectures.{spec.architecture}[{position}] (model {spec.name!r}, {layer_config['class_name']})"
        config = {**(layer_config.get("config") or {}), "name": name}
        layer = _layer({**layer_config, "config": config}, where)
        try:
            model.add(layer)
        except Exception as error:
            raise ParamsError(f"{where}: the layer cannot take its input: {error}") from None
    # Logits stay float32 under mixed precision, as Keras recommends for the last layer.
    model.add(keras.layers.Dense(num_classes, name=LOGITS, dtype="float32"))
    return model


def _build_application(spec, input_shape, num_classes):
    """A ``keras.applications`` network on the data: input, resizing if the network needs a larger
    input, 0..255 pixels (the range the applications document), the network without its top,
    global average pooling, and the logits layer.

    Built offline: ``weights`` is null (random initial weights) or a local weights file of the
    network without its top.
    """
    import re as regex

    import keras

    application = spec.application
    where = f"architectures.{spec.architecture} (model {spec.name!r}, {application['application']})"
    constructor = getattr(keras.applications, application["application"], None)
    if not callable(constructor):
        known = ", ".join(name for name in dir(keras.applications) if name[0].isupper())
        raise ParamsError(f"{where}: keras.applications has no {application['application']!r} (known: {known})")
    weights = application["weights"]
    if weights is not None and not Path(weights).is_file():
        raise ParamsError(f"{where}.weights: {weights} does not exist (kd builds offline: a local weights file "
                          "of the network without its top, or null)")
    size = application["input_size"] or input_shape[:2]
    for _ in range(2):  # a second try at the smallest input the network says it takes
        try:
            network = constructor(include_top=False, weights=weights, input_shape=(*size, input_shape[2]),
                                  pooling="avg", **application["config"])
            break
        except ValueError as error:
            smallest = regex.search(r"at least (\d+)x(\d+)", str(error))
            if smallest is None or tuple(size) != tuple(input_shape[:2]) or application["input_size"]:
                raise ParamsError(f"{where}: Keras rejected it: {error}") from None
            size = (int(smallest.group(1)), int(smallest.group(2)))
        except Exception as error:  # TypeError for an unknown config key, ...
            raise ParamsError(f"{where}: Keras rejected it: {error}") from None
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = inputs
    if tuple(size) != tuple(input_shape[:2]):
        x = keras.layers.Resizing(*size, name="resizing")(x)
    x = keras.layers.Rescaling(255.0, name="pixels")(x)  # kd's images are in [0, 1]
    x = network(x)
    outputs = keras.layers.Dense(num_classes, name=LOGITS, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=spec.name)


def layer_names(layers):
    """The names of a model's layers built from ``layers`` (configs), the output layer last.

    A config's own ``name`` is kept; other layers get the name Keras gives them in a fresh
    process (``dense``, ``dense_1``, ...), set explicitly so that it does not depend on what
    else the process built. Loss terms refer to layers by these names.
    """
    names, counts = [], {}
    for layer_config in layers:
        name = (layer_config.get("config") or {}).get("name")
        if name is None:
            prefix = _snake_case(layer_config["class_name"])
            name = prefix if prefix not in counts else f"{prefix}_{counts[prefix]}"
            counts[prefix] = counts.get(prefix, 0) + 1
        names.append(name)
    return names + [LOGITS]


def _snake_case(class_name):
    """``MaxPooling2D`` -> ``max_pooling2d``, as ``keras.src.utils.naming.to_snake_case``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def build_augmentation(spec, input_shape, seed):
    """The ``keras.Sequential`` of ``spec.augmentation``'s preprocessing layers, or None.

    A layer without a ``seed`` in its config is seeded from ``seed`` and its position, so
    the random transformations are the same on every run with the same params.
    """
    import keras

    if not spec.augmentation:
        return None
    augment = keras.Sequential(name=f"{spec.name}_augmentation")
    augment.add(keras.Input(shape=tuple(input_shape)))
    for position, layer_config in enumerate(spec.augmentation):
        where = f"augmentation of model {spec.name!r}, layer {position} ({layer_config['class_name']})"
        config = dict(layer_config.get("config") or {})
        if "seed" in inspect.signature(_layer_class(layer_config, where)).parameters:
            config.setdefault("seed", seed + position)
        layer = _layer({**layer_config, "config": config}, where)
        try:
            augment.add(layer)
        except Exception as error:
            raise ParamsError(f"{where}: the layer cannot take the images: {error}") from None
    return augment


def augmentation_layers(views, input_shape, seed):
    """The Keras preprocessing layers of a views entry's augmentation, built for ``input_shape``, each
    exposing the per-image transformation it draws (``kd.views`` stores and replays them)."""
    layers = []
    for position, config in enumerate(views.augmentation):
        where = f"views.{views.name}.augmentation ({views.augmentation_name}), layer {position} ({config['class_name']})"
        # float32 whatever the training policy: the student must rebuild exactly the teacher's views.
        layer = _layer({**config, "config": {**(config.get("config") or {}), "seed": seed + position,
                                             "dtype": "float32"}}, where)
        if not (hasattr(layer, "get_random_transformation") and hasattr(layer, "transform_images")):
            raise ParamsError(f"{where}: has no stateless form (it does not expose the random transformation it "
                              "draws); views need one. Use it on the online path (distill: with augmentation:)")
        layer.build((None,) + tuple(input_shape))
        layers.append(layer)
    return layers


def check_stateless(layers, input_shape, where):
    """Refuse layers whose output is not a function of their drawn per-image transformation alone.

    On a small random batch: the same transformation gives the same images twice, and the
    transformation of a permuted batch, permuted alike, gives the images permuted alike.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((6,) + tuple(input_shape)).astype(np.float32)
    order = np.array([3, 0, 5, 1, 4, 2])
    generator = keras.random.SeedGenerator(0)
    for layer in layers:
        transformation = layer.get_random_transformation(images, training=True, seed=generator)
        drawn = per_image(transformation, len(images))
        if drawn is None:
            raise ParamsError(f"{where}: layer {layer.__class__.__name__} has no stateless form (its random "
                              "transformation is not a set of per-image arrays); use it on the online path")
        first = keras.ops.convert_to_numpy(layer.transform_images(images, transformation, training=True))
        again = keras.ops.convert_to_numpy(layer.transform_images(images, transformation, training=True))
        permuted = {**transformation, **{k: keras.ops.convert_to_numpy(v)[order] for k, v in drawn.items()}}
        shuffled = keras.ops.convert_to_numpy(layer.transform_images(images[order], permuted, training=True))
        if not (np.array_equal(first, again) and np.allclose(shuffled, first[order], atol=1e-6)):
            raise ParamsError(f"{where}: layer {layer.__class__.__name__} has no stateless form (its output depends on "
                              "more than the transformation it drew); use it on the online path")
        images = first


def per_image(transformation, batch):
    """The entries of a layer's transformation that hold one value per image; None if it is not a dict."""
    import keras

    if transformation is None:
        return {}
    if not isinstance(transformation, dict):
        return None
    per_image = {}
    for key, value in transformation.items():
        shape = keras.ops.shape(value) if hasattr(value, "shape") else ()
        if len(shape) and shape[0] == batch:
            per_image[key] = value
    return per_image


def build_optimizer(spec, steps_per_epoch):
    """The Keras optimizer of ``spec.optimizer``, with ``spec.schedule`` as its learning rate.

    A schedule's ``initial_learning_rate`` defaults to the optimizer's ``learning_rate``,
    and its ``decay_steps`` to the whole run (``epochs × steps_per_epoch``).
    """
    import keras

    config = dict(spec.optimizer.get("config") or {})
    if spec.schedule is not None:
        schedule_config = dict(spec.schedule.get("config") or {})
        defaults = {"initial_learning_rate": config.get("learning_rate", 0.001),
                    "decay_steps": spec.epochs * steps_per_epoch}
        try:
            schedule_class = getattr(keras.optimizers.schedules, spec.schedule["class_name"])
            accepted = inspect.signature(schedule_class).parameters
            for name, value in defaults.items():
                if name in accepted:
                    schedule_config.setdefault(name, value)
            config["learning_rate"] = keras.optimizers.schedules.deserialize(
                {"class_name": spec.schedule["class_name"], "config": schedule_config}
            )
        except Exception as error:
            raise ParamsError(f"schedule of model {spec.name!r}: Keras rejected {spec.schedule}: {error}") from None
    try:
        optimizer = keras.optimizers.deserialize({"class_name": spec.optimizer["class_name"], "config": config})
    except Exception as error:
        raise ParamsError(f"optimizer of model {spec.name!r}: Keras rejected {spec.optimizer}: {error}") from None
    if not isinstance(optimizer, keras.optimizers.Optimizer):  # Keras hands an unknown name back as a string
        known = sorted(name for name, value in vars(keras.optimizers).items()
                       if isinstance(value, type) and issubclass(value, keras.optimizers.Optimizer)
                       and value is not keras.optimizers.Optimizer)
        raise ParamsError(f"optimizer of model {spec.name!r}: Keras has no optimizer "
                          f"{spec.optimizer['class_name']!r}; expected one of {', '.join(known)}")
    return optimizer


def _layer_class(layer_config, where):
    import keras

    layer_class = getattr(keras.layers, layer_config["class_name"], None)
    if not isinstance(layer_class, type):
        raise ParamsError(f"{where}: Keras has no layer {layer_config['class_name']!r}")
    return layer_class


def _layer(layer_config, where):
    """Deserialize one ``{class_name, config}`` layer config; a ParamsError names ``where``."""
    import keras

    try:
        return keras.layers.deserialize(
            {"module": "keras.layers", "class_name": layer_config["class_name"],
             "config": dict(layer_config.get("config") or {})}
        )
    except Exception as error:  # Keras raises TypeError, ValueError, ... for bad configs
        raise ParamsError(f"{where}: Keras rejected the layer: {error}") from None


def check_models(params, input_shape, num_classes):
    """Build every model of ``params`` on this data, with its augmentation, optimizer and schedule,
    and check the layers its loss terms compare: a bad entry anywhere stops a stage before any
    work, naming the model and entry. Cheap (no training); call it before seeding, as building
    draws initial weights.
    """
    from kd.devices import require_backend

    for name, spec in params.models.items():  # in prepare, not only when that model's stage starts
        require_backend(spec.backend, f"training.backend of model {name!r}")
    built = {}
    for name, spec in params.models.items():
        if spec.pretrained is not None:  # a file: its own stage loads and checks it
            continue
        built[name] = build_model(spec, input_shape, num_classes)
        build_augmentation(spec, input_shape, seed=0)
        build_optimizer(spec, steps_per_epoch=1)
    for views in (params.views or {}).values():  # their augmentation rebuilt exactly, their layers exist
        where = f"views.{views.name}.augmentation ({views.augmentation_name})"
        check_stateless(augmentation_layers(views, input_shape, seed=0), input_shape, where)
        if views.layers and views.teacher in built:
            known = [layer.name for layer in built[views.teacher].layers]
            missing = [name for name in views.layers if name not in known]
            if missing:
                raise ParamsError(f"views.{views.name}.layers: teacher {views.teacher!r} has no layer "
                                  f"{', '.join(map(repr, missing))}; its layers: {', '.join(known)}")
    for name, spec in params.models.items():
        if spec.distillation is None:
            continue
        features = [term for term, _ in spec.distillation.loss if term.features]
        if features and spec.teacher in built:
            student, teacher = built[name], built[spec.teacher]
            for term in features:
                term.check_shapes({n: tuple(student.get_layer(n).output.shape) for n in term.student_layers},
                                  {n: tuple(teacher.get_layer(n).output.shape) for n in term.teacher_layers})


def float32_copy(model, spec):
    """``model`` as a float32 model: the same weights (float32 under any mixed policy) in layers
    built with the float32 policy. A model trained in float32 is returned as it is."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = build_model(spec, model.input_shape[1:], model.output_shape[-1])
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
