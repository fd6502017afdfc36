"""A model's layers as kd reads them: their outputs by name, their shapes, and the check that they exist.

One home for every module that looks inside a model (the trainer, the teachers, the views).
"""

from kd.errors import ParamsError


def outputs_of(model, x, training):
    """``{"logits": ..., <layer>: ...}`` of a model from :func:`feature_layers`."""
    outputs = model(x, training=training)
    return outputs if isinstance(outputs, dict) else {"logits": outputs}


def predicted_outputs(model, x):
    """:func:`outputs_of` in inference mode, as NumPy arrays, through Keras's compiled predict function: one
    traced graph (a jitted function under JAX) instead of one op at a time, for a model run on many batches."""
    outputs = model.predict_on_batch(x)
    return outputs if isinstance(outputs, dict) else {"logits": outputs}


def feature_layers(model, layer_names, key, what):
    """A Keras model giving ``{"logits": ..., <layer>: ...}`` for ``model``'s named layers.

    With no names, ``model`` itself (its output is the logits; see :func:`outputs_of`). A
    name that is not a layer of ``model`` raises ParamsError listing its layers.
    """
    import keras

    if not layer_names:
        return model
    known = [layer.name for layer in model.layers]
    missing = [name for name in layer_names if name not in known]
    if missing:
        raise ParamsError(f"{key}: {what} has no layer {', '.join(map(repr, missing))}; its layers: {', '.join(known)}")
    outputs = {"logits": model.outputs[0], **{name: model.get_layer(name).output for name in layer_names}}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def layer_shapes(model, names):
    """``{layer name: output shape}`` of ``model``'s named layers, batch axis first."""
    return {name: tuple(model.get_layer(name).output.shape) for name in names}
