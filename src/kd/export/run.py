"""TFLite files run and measured through the LiteRT interpreter (``ai-edge-litert``).

:func:`evaluate_tflite` runs a file on test images: int8 inputs are quantized and int8 outputs
dequantized with the file's own ``(scale, zero_point)``; it reports the test metrics, the file's
size and its batch-1 latency.
"""

import statistics
import time
from pathlib import Path

import numpy as np

from kd.evaluation import test_metrics
from kd.export.savedmodel import ExportError, _first_line
from kd.export.tflite import _interpreter, dequantize, quantize


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
