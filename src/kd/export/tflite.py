"""A SavedModel converted to TFLite bytes, float32 or full-integer int8, and the int8 arithmetic.

:func:`convert_tflite` converts the SavedModel (``TFLiteConverter.from_saved_model``: the file
shipped is the one converted; ``from_keras_model`` would export a second SavedModel to a
temporary folder and print its endpoints on stdout), to float32, or to int8 in and out when given
representative images. An int8 file in which the converter left ops computing in float32 is
refused. Conversion is deterministic. :func:`quantize` and :func:`dequantize` move values in and
out of a tensor's integer type with the file's own ``(scale, zero_point)``.
"""

import re
from pathlib import Path

import numpy as np

from kd.artifacts import atomic_path
from kd.export.savedmodel import ExportError, _first_line


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


def _interpreter(model, num_threads=None):
    """A LiteRT interpreter (``ai-edge-litert``) for a TFLite file path or bytes.

    Here rather than in :mod:`kd.export.run`: the conversion inspects the file it made with it too.
    """
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
