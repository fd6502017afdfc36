"""Ship a trained model: a SavedModel, float32 and full-integer int8 TFLite files, and
their accuracy, size and latency measured through the LiteRT interpreter.

- :func:`export_saved_model` writes ``model.export(folder)`` atomically and byte-stably.
  Keras/TF's SavedModel is not byte-stable as written: the variables are saved in the
  iteration order of a set keyed by memory address (it changes from process to process),
  function names and captured-input names carry a process-wide counter (they change when
  anything else was traced first), and ``fingerprint.pb`` holds a random UUID. Here the
  variables are saved in name order, the counters are renumbered by rank and the UUID is
  derived from the content, so one model gives one set of bytes (DVC hashes outputs). The state of
  Dropout's seed generator, drawn at random when a model is loaded, is saved as zeros.
- :func:`convert_tflite` converts that SavedModel (``TFLiteConverter.from_saved_model``:
  the file shipped is the one converted; ``from_keras_model`` would export a second
  SavedModel to a temporary folder and print its endpoints on stdout), to
  float32, or to int8 in and out when given representative images. An int8 file in which
  the converter left ops computing in float32 is refused. Conversion is deterministic.
- :func:`evaluate_tflite` runs a file on test images: int8 inputs are quantized and int8
  outputs dequantized with the file's own ``(scale, zero_point)``.
"""

import contextlib
import hashlib
import re
import statistics
import time
from pathlib import Path

import numpy as np

from kd.artifacts import atomic_directory, atomic_path
from kd.errors import KdError
from kd.evaluation import test_metrics


class ExportError(KdError):
    """A model cannot be exported or converted, or a TFLite file is not what was asked for."""


# ---------------------------------------------------------------------------- SavedModel


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


# ---------------------------------------------------------------------------- TFLite


def convert_tflite(saved_model_dir, representative=None, *, name=None):
    """Convert a SavedModel to TFLite bytes: float32, or full-integer int8 given images.

    ``representative``: ``(N, H, W, C)`` float32 images, N ≥ 1, like the model's inputs
    (in [0, 1]); they calibrate the activation ranges one image at a time. The int8 file
    takes and returns int8 and must compute every op in int8. ``name`` names the model in
    errors (default: the folder's name).
    """
    import tensorflow as tf

    saved_model_dir = Path(saved_model_dir)
    name = name or saved_model_dir.name
    kind = "float32" if representative is None else "int8"
    if not (saved_model_dir / "saved_model.pb").is_file():
        raise ExportError(f"SavedModel {saved_model_dir} of model {name!r} is missing; export it first")
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        if representative is not None:
            images = _representative_images(representative, name)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        content = converter.convert()
    except ExportError:
        raise
    except Exception as error:  # ConverterError, RuntimeError, ValueError...: the message says why
        raise ExportError(f"model {name!r} cannot be converted to {kind} TFLite: {_converter_reason(error)}") from None
    if representative is not None:
        float_ops = _float_ops(content)
        if float_ops:
            raise ExportError(
                f"model {name!r} is not fully int8 after quantization: {', '.join(float_ops)} "
                "still compute in float32 (no int8 kernel); expected int8 for every op"
            )
    return bytes(content)


def write_tflite(path, content):
    """Write TFLite bytes to ``path``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)


def _representative_images(representative, name):
    images = np.asarray(representative, dtype=np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ExportError(
            f"representative images for model {name!r} have shape {images.shape}; "
            "expected (N, ...) with N >= 1 images shaped like the model's input"
        )
    if not np.isfinite(images).all():
        raise ExportError(f"representative images for model {name!r} hold NaN or infinite values")
    return images


def _converter_reason(error):
    """The converter's error lines without MLIR locations, joined on one line."""
    reasons = []
    for line in str(error).splitlines():
        found = re.search(r"error: (?:loc\(.*\)\): )?(.*)", line)
        reason = (found.group(1) if found else "").strip()
        if reason and reason not in reasons and not reason.startswith("failed while converting"):
            reasons.append(reason)
    if not reasons:
        reasons = [_first_line(error)]
    text = "; ".join(reasons)
    return text if len(text) <= 400 else text[:397] + "..."


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _float_ops(content):
    """Names of the ops of a TFLite model that read or write float32 tensors, (de)quantize aside."""
    interpreter = _interpreter(content)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    if not hasattr(interpreter, "_get_ops_details"):  # only tensors to go by
        return ["some op"] if np.dtype(np.float32) in dtypes.values() else []
    names = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(dtypes.get(i) == np.float32 for i in tensors) and op["op_name"] not in names:
            names.append(op["op_name"])
    return names


# ---------------------------------------------------------------------------- LiteRT


def _interpreter(model, num_threads=None):
    """A LiteRT interpreter (``ai-edge-litert``) for a TFLite file path or bytes."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    return Interpreter(model_path=str(model), num_threads=num_threads)


def quantize(x, details):
    """Float values to the integer type of a tensor: round(x / scale) + zero_point, clipped."""
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if dtype == np.float32 or scale == 0:
        return np.asarray(x, dtype=dtype)
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # half away from zero, as TFLite
    limits = np.iinfo(dtype)
    return np.clip(rounded + zero_point, limits.min, limits.max).astype(dtype)


def dequantize(q, details):
    """Integer values of a tensor to float32: (q - zero_point) * scale."""
    scale, zero_point = details["quantization"]
    if np.dtype(details["dtype"]) == np.float32 or scale == 0:
        return np.asarray(q, dtype=np.float32)
    return ((q.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)


def prepare(model, batch_size=256, num_threads=None, what=None):
    """An allocated interpreter taking ``batch_size`` images per call, or 1 if the file's batch is fixed.

    Returns ``(interpreter, batch_size)``.
    """
    interpreter = _interpreter(model, num_threads)
    source = what or (model if not isinstance(model, (bytes, bytearray)) else "the TFLite model")
    (inp,) = interpreter.get_input_details()
    if batch_size > 1 and int(inp["shape_signature"][0]) == -1:
        try:
            interpreter.resize_tensor_input(inp["index"], [batch_size, *inp["shape"][1:]])
            interpreter.allocate_tensors()
            return interpreter, batch_size
        except (RuntimeError, ValueError):  # a batch-1 graph: rebuild and loop one at a time
            interpreter = _interpreter(model, num_threads)
    try:
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as error:
        raise ExportError(f"TFLite model {source} cannot be loaded by LiteRT: {_first_line(error)}") from None
    return interpreter, 1


def predict_tflite(interpreter, batch_size, x):
    """Float32 outputs of a prepared interpreter on images ``x``, ``batch_size`` at a time."""
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start : start + batch_size], np.float32)
        count = len(chunk)
        if count < batch_size:  # pad the last batch rather than reallocate
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - count, axis=0)])
        interpreter.set_tensor(inp["index"], quantize(chunk, inp))
        interpreter.invoke()
        outputs.append(dequantize(interpreter.get_tensor(out["index"])[:count], out))
    return np.concatenate(outputs)


def measure_tflite_latency(model, sample, warmup=20, repeats=200, num_threads=None):
    """Median ms of a batch-1 call (set input, invoke, get output) after ``warmup`` calls.

    The input is quantized once beforehand: an int8 pipeline feeds int8 pixels directly.
    """
    interpreter, _ = prepare(model, batch_size=1, num_threads=num_threads)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    single = quantize(np.asarray(sample[:1], np.float32), inp)

    def call():
        interpreter.set_tensor(inp["index"], single)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 4)


def evaluate_tflite(path, x, y, reference_logits=None, *, warmup=20, repeats=200, batch_size=256, num_threads=None):
    """Test metrics of the TFLite file at ``path`` on images ``x`` with integer labels ``y``.

    ``x`` is a float32 array or a split's :class:`kd.data.Images` (read a batch at a time).

    Returns :func:`kd.evaluation.test_metrics` (``accuracy``, ``loss``, ``errors``,
    ``examples``, and ``agreement``: top-1 agreement with ``reference_logits``, e.g. the
    Keras model's), plus ``size_bytes``, ``latency_ms_batch1``, ``input_dtype`` and
    ``eval_batch_size`` (the batch the file could be run at).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"TFLite file {path} is missing; convert the model first")
    y = np.asarray(y)
    interpreter, used_batch = prepare(path, batch_size, num_threads, what=path)
    (inp,) = interpreter.get_input_details()
    if tuple(x.shape[1:]) != tuple(int(d) for d in inp["shape"][1:]) or len(x) != len(y) or len(x) == 0:
        raise ExportError(
            f"test images {x.shape} and labels {y.shape} do not fit TFLite file {path}; "
            f"expected N >= 1 images of shape {tuple(int(d) for d in inp['shape'][1:])} and N labels"
        )
    logits = predict_tflite(interpreter, used_batch, x)
    if reference_logits is not None and np.shape(reference_logits) != logits.shape:
        raise ExportError(
            f"reference logits {np.shape(reference_logits)} do not match the outputs {logits.shape} of {path}"
        )
    metrics = test_metrics(logits, y, None if reference_logits is None else np.asarray(reference_logits))
    metrics.update(
        size_bytes=path.stat().st_size,
        latency_ms_batch1=measure_tflite_latency(path, x, warmup, repeats, num_threads),
        input_dtype=np.dtype(inp["dtype"]).name,
        eval_batch_size=used_batch,
    )
    return metrics
