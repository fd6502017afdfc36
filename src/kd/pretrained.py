"""A teacher you bring: a Keras model trained elsewhere, loaded from its file and checked.

``pretrained.<name>: {path, outputs}`` in params.yaml names a ``.keras`` (or legacy ``.h5``)
file. Its stage loads it with Keras's safe mode (no code from the file runs; a model with
custom objects is refused with the reason), checks it against the data (input shape,
one output per class) and against what ``outputs`` declares, and saves it as
``models/<name>.keras`` with logits as its output, so every other stage treats it like a
model kd trained: students learn from its cached logits or run it online, evaluate and
export measure it.

``input_scale`` says what the model takes, in terms of kd's images (floats in [0, 1]): 255 for a
model trained on 0..255 pixels (what ``keras.utils.image_dataset_from_directory`` gives, and
what ``keras.applications`` networks with their own preprocessing expect); kd puts a
``Rescaling`` layer in front of it.

``outputs: probabilities`` says the file ends with a softmax: it is removed (the final
layer's softmax activation set to linear, or a final ``Softmax`` layer dropped), which gives
the logits up to a per-image constant, the same soft targets at any temperature and no
log of a rounded-to-zero probability.
"""

from pathlib import Path

from kd.errors import ArtifactError, ParamsError


def not_a_model_file(path):
    """Why ``path`` cannot be a Keras model file by its first bytes (Keras would say "file not
    found"), or None: a ``.keras`` file is a zip archive, a ``.h5`` file an HDF5 one."""
    import zipfile

    path = Path(path)
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        return "is not a Keras archive (a .keras file is a zip archive holding config.json and the weights; this " \
               "one is not a zip archive: damaged, or another kind of file renamed)"
    if path.suffix == ".h5" and path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
        return "is not an HDF5 file (a legacy .h5 Keras model is one; this file does not start like one)"
    return None


def load_pretrained(spec, input_shape, num_classes):
    """The model of ``spec.pretrained``, checked, with logits as its output."""
    import keras

    key, path = f"pretrained.{spec.name}", Path(spec.pretrained.path)
    if not path.is_file():
        raise ArtifactError(f"{key}.path: {path} does not exist (expected a Keras model file, .keras or .h5)")
    not_an_archive = not_a_model_file(path)
    if not_an_archive:
        raise ArtifactError(f"{key}.path: {path} {not_an_archive}")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file; custom objects among them
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "custom" in reason.lower() or "could not locate" in reason.lower() or "lambda" in reason.lower():
            reason += " (kd loads models in safe mode: built-in Keras layers only, no custom objects or Lambda layers)"
        raise ArtifactError(f"{key}.path: {path} cannot be loaded as a Keras model: {reason}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ArtifactError(f"{key}.path: {path} has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
                            "expected one image input and one output of class scores")
    expected_input = tuple(model.input_shape[1:])
    if expected_input != tuple(input_shape):
        raise ArtifactError(
            f"{key}.path: {path} takes inputs of shape {expected_input} but the data's images are {tuple(input_shape)}; "
            "prepare the data at the model's size (data.images.size, color_mode) or re-save the model for it"
        )
    if model.output_shape[-1] != num_classes or len(model.output_shape) != 2:
        raise ArtifactError(f"{key}.path: {path} gives outputs of shape {model.output_shape[1:]} but the data has "
                            f"{num_classes} classes; expected one output per class")
    softmax = _final_softmax(model)
    if spec.pretrained.outputs == "logits" and softmax is not None:
        raise ParamsError(f"{key}.outputs: logits, but the last layer of {path} ({softmax}) applies a softmax; "
                          "declare outputs: probabilities")
    if spec.pretrained.outputs == "probabilities":
        if softmax is None:
            raise ParamsError(f"{key}.outputs: probabilities, but the last layer of {path} "
                              f"({model.layers[-1].name}) applies no softmax to remove; declare outputs: logits")
        model = _without_final_softmax(model)
    if spec.pretrained.input_scale != 1.0:
        inputs = keras.Input(model.input_shape[1:], name="input_layer")
        scaled = keras.layers.Rescaling(spec.pretrained.input_scale, name="input_scale")(inputs)
        model = keras.Model(inputs, model(scaled), name=model.name)
    model.trainable = False
    return model


def _final_softmax(model):
    """The name of the last layer if it applies a softmax (as its activation, or as a Softmax layer), else None."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return last.name
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        return last.name
    return None


def _without_final_softmax(model):
    """The same model (same weights) giving the inputs of its final softmax: the logits."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return keras.Model(model.inputs, last.input, name=model.name)
    config = last.get_config()
    config["activation"] = "linear"
    linear = type(last).from_config(config)
    outputs = linear(last.input)
    linear.set_weights(last.get_weights())
    return keras.Model(model.inputs, outputs, name=model.name)
