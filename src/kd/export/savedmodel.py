"""A trained model's inference function written as a SavedModel, atomically and byte-stably.

Keras/TF's SavedModel is not byte-stable as written: the variables are saved in the iteration
order of a set keyed by memory address (it changes from process to process), function names and
captured-input names carry a process-wide counter (they change when anything else was traced
first), and ``fingerprint.pb`` holds a random UUID. Here the variables are saved in name order,
the counters are renumbered by rank and the UUID is derived from the content, so one model gives
one set of bytes (DVC hashes outputs). The state of Dropout's seed generator, drawn at random when
a model is loaded, is saved as zeros.

:class:`ExportError` is defined here, the first step of an export; :mod:`kd.export.tflite` and
:mod:`kd.export.run` raise it too.
"""

import contextlib
import hashlib
import re
from pathlib import Path

import numpy as np

from kd.artifacts import atomic_directory
from kd.errors import KdError


class ExportError(KdError):
    """A model cannot be exported or converted, or a TFLite file is not what was asked for."""


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def export_saved_model(model, folder):
    """Write ``model``'s inference function as a SavedModel folder, atomically; return its path.

    The signature is Keras's ``serve`` (also ``serving_default``), batch size free; its
    input is named ``images`` (``images_0``... for several inputs), not after Keras's
    process-wide ``keras_tensor_<n>`` counter. Export the model loaded from its ``.keras``
    file: a model built in code names its variables ``<model>/<layer>/kernel``, a loaded one
    ``<layer>/kernel``, and the SavedModel keeps those names (the TFLite files do not).
    """
    folder = Path(folder)
    with atomic_directory(folder) as temporary:
        try:
            with _variables_in_name_order(), _fixed_seed_states(model):
                model.export(str(temporary), verbose=False, input_signature=_input_signature(model))
        except Exception as error:  # Keras/TF raise many types for a model they cannot trace
            raise ExportError(
                f"model {model.name!r} cannot be exported as a SavedModel to {folder}: {_first_line(error)}"
            ) from None
        _canonicalize_saved_model(temporary)
    return folder


def _input_signature(model):
    """Batch-free ``tf.TensorSpec``s of the model's inputs with fixed names, or None to let Keras infer."""
    import tensorflow as tf

    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):  # a subclassed model without symbolic inputs
        return None
    if not inputs:
        return None
    specs = [
        tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name="images" if len(inputs) == 1 else f"images_{i}")
        for i, tensor in enumerate(inputs)
    ]
    return specs if len(specs) == 1 else [specs]


@contextlib.contextmanager
def _variables_in_name_order():
    """Make Keras's exporter list the variables it saves by name, not by set order.

    Patches a private Keras function for the duration of the block; if a Keras upgrade
    removed it, the export still works but may not be byte-stable (the tests say so).
    """
    try:
        from keras.src.export import saved_model_export_archive as archive
    except ImportError:
        yield
        return
    original = getattr(archive, "_list_variables_used_by_fns", None)
    if original is None:
        yield
        return

    def key(variable):
        return variable.name, tuple(variable.shape), variable.dtype.name

    archive._list_variables_used_by_fns = lambda fns: tuple(sorted(group, key=key) for group in original(fns))
    try:
        yield
    finally:
        archive._list_variables_used_by_fns = original


@contextlib.contextmanager
def _fixed_seed_states(model):
    """Zero, for the export, the state of the model's seed generators (Dropout's and the like).

    Keras draws that state at random when a model is built or loaded (a ``.keras`` file does not
    hold it), and the SavedModel saves it with the weights: two exports of one file would differ
    in ``variables.data-*``. Inference never reads it. The model's own state is restored after.
    """
    states = [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]
    values = [v.numpy() for v in states]
    for variable in states:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    try:
        yield
    finally:
        for variable, value in zip(states, values):
            variable.assign(value)


_COUNTED = re.compile(r"^(.*_)(\d+)$")


def _canonicalize_saved_model(folder):
    """Renumber counter-named functions and captures in ``saved_model.pb``; rewrite the fingerprint."""
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2

    path = folder / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    library = [f for graph in saved.meta_graphs for f in graph.graph_def.library.function]
    _rename_strings(saved, _rank_renames([f.signature.name for f in library]))
    # Placeholders of captured variables are named by a global counter too ("_user_specified_name": "598").
    captured = [attrs["_user_specified_name"] for attrs in _attr_maps(saved)
                if "_user_specified_name" in attrs and attrs["_user_specified_name"].s.isdigit()]
    rank = {n: i for i, n in enumerate(sorted({int(a.s) for a in captured}))}
    for attr in captured:
        attr.s = str(rank[int(attr.s)]).encode()
    for graph in saved.meta_graphs:  # TF writes the library sorted by name; keep it so
        functions = sorted(graph.graph_def.library.function, key=lambda f: f.signature.name)
        functions = [type(f).FromString(f.SerializeToString()) for f in functions]
        del graph.graph_def.library.function[:]
        graph.graph_def.library.function.extend(functions)
    path.write_bytes(saved.SerializeToString(deterministic=True))

    try:  # TF's own fingerprint of the rewritten folder (private module; the file is optional)
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(folder)))
    except (ImportError, AttributeError):
        (folder / "fingerprint.pb").unlink(missing_ok=True)
        return
    fingerprint.uuid = ""
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))  # same format as TF's random one
    (folder / "fingerprint.pb").write_bytes(fingerprint.SerializeToString(deterministic=True))


def _rank_renames(names):
    """``{name_<counter>: name_<rank of counter>}`` for every name ending in a counter."""
    counted = {n: _COUNTED.match(n) for n in names}
    counters = sorted({int(m.group(2)) for m in counted.values() if m})
    rank = {c: i for i, c in enumerate(counters)}
    return {n: f"{m.group(1)}{rank[int(m.group(2))]}" for n, m in counted.items() if m}


def _rename_strings(message, renames):
    """Replace, everywhere in a protobuf message, every string field or map key found in ``renames``."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            items = list(value.items())
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for _, item in items:
                    _rename_strings(item, renames)
                items = [(k, type(v).FromString(v.SerializeToString())) for k, v in items]
            rename_key = key_field.type == FieldDescriptor.TYPE_STRING
            rename_value = value_field.type == FieldDescriptor.TYPE_STRING
            value.clear()
            for k, v in items:
                k = renames.get(k, k) if rename_key else k
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    value[k].CopyFrom(v)
                else:
                    value[k] = renames.get(v, v) if rename_value else v
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                _rename_strings(item, renames)
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [renames.get(s, s) for s in value]
            elif value in renames:
                setattr(message, field.name, renames[value])


def _attr_maps(message):
    """Every ``attr`` map (``NodeDef.attr``, ``FunctionDef.ArgAttrs.attr``...) inside ``message``."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                if field.name == "attr":
                    yield value
                for item in value.values():
                    yield from _attr_maps(item)
        else:
            for item in value if field.is_repeated else [value]:
                yield from _attr_maps(item)
