"""Ship a trained model: a SavedModel, float32 and full-integer int8 TFLite files, and
their accuracy, size and latency measured through the LiteRT interpreter.

- :mod:`kd.export.savedmodel`: :func:`export_saved_model` writes ``model.export(folder)``
  atomically and byte-stably;
- :mod:`kd.export.tflite`: :func:`convert_tflite` converts that SavedModel to float32, or to
  int8 in and out given representative images; :func:`quantize` and :func:`dequantize`;
- :mod:`kd.export.run`: :func:`evaluate_tflite` runs a file on test images through LiteRT
  and measures it.

The names below are the ones the stages and tests import from ``kd.export`` (the tests some
private ones too).
"""

from kd.export.run import evaluate_tflite, measure_tflite_latency, predict_tflite, prepare
from kd.export.savedmodel import ExportError, export_saved_model
from kd.export.tflite import _float_ops, _interpreter, convert_tflite, dequantize, quantize, write_tflite

__all__ = [
    "ExportError",
    "convert_tflite",
    "dequantize",
    "evaluate_tflite",
    "export_saved_model",
    "measure_tflite_latency",
    "predict_tflite",
    "prepare",
    "quantize",
    "write_tflite",
]
