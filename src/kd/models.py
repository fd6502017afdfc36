"""Build a model from params: Keras layer configs, deserialized by Keras itself.

An architecture in params.yaml is a list of ``{class_name, config}`` entries, the
format ``keras.layers.serialize`` writes, so any built-in Keras layer works without a
registry of our own. The builder adds the input (shape from the data) and the output
layer: a ``Dense`` with one unit per class and no activation, so every model gives
logits and the number of classes always comes from the data.
"""

from kd.errors import ParamsError


def build_model(spec, input_shape, num_classes):
    """Build the uncompiled ``keras.Sequential`` for ``spec`` (a :class:`kd.params.ModelSpec`).

    A layer class Keras does not know, or a config it rejects, raises ParamsError naming
    the model, the architecture and the layer's position.
    """
    import keras

    model = keras.Sequential(name=spec.name)
    model.add(keras.Input(shape=tuple(input_shape)))
    for position, layer_config in enumerate(spec.layers):
        where = f"architectures.{spec.architecture}[{position}] (model {spec.name!r}, {layer_config['class_name']})"
        try:
            layer = keras.layers.deserialize(
                {
                    "module": "keras.layers",
                    "class_name": layer_config["class_name"],
                    "config": dict(layer_config.get("config") or {}),
                }
            )
        except Exception as error:  # Keras raises TypeError, ValueError, ... for bad configs
            raise ParamsError(f"{where}: Keras rejected the layer: {error}") from None
        try:
            model.add(layer)
        except Exception as error:
            raise ParamsError(f"{where}: the layer cannot take its input: {error}") from None
    # Logits stay float32 under mixed precision, as Keras recommends for the last layer.
    model.add(keras.layers.Dense(num_classes, name="logits", dtype="float32"))
    return model


def build_optimizer(spec):
    """The Keras optimizer named by ``spec.optimizer`` (a ``{class_name, config}`` mapping)."""
    import keras

    try:
        return keras.optimizers.deserialize(
            {"class_name": spec.optimizer["class_name"], "config": dict(spec.optimizer.get("config") or {})}
        )
    except Exception as error:
        raise ParamsError(f"optimizer of model {spec.name!r}: Keras rejected {spec.optimizer}: {error}") from None
