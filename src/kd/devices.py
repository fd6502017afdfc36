"""Where training runs: the ``tf.distribute`` strategy and the numeric precision.

Both are chosen from params (``training.distribution``, ``training.precision``), ``auto``
by default:

- distribution ``auto``: ``MirroredStrategy`` over the GPUs when there are several, else
  TensorFlow's default strategy (one device); ``mirrored`` forces ``MirroredStrategy``
  over every GPU, or over every logical CPU device when there is no GPU; ``default``
  forces one device.
- precision ``auto``: ``mixed_float16`` when a GPU is present, else ``float32``; or name a
  Keras dtype policy yourself (``mixed_bfloat16`` pays on CPUs with bfloat16 arithmetic: the
  ``amx_bf16`` or ``avx512_bf16`` flags, see :func:`cpu_bf16_flags`). Under a mixed policy the weights stay
  float32 and the loss, softmax and metrics are computed in float32; the saved model is a
  float32 model (:func:`kd.models.float32_copy`), so serving and export do not depend on it.
"""

from pathlib import Path

import tensorflow as tf

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic


def strategy_for(setting):
    """The ``tf.distribute`` strategy for ``training.distribution``."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if setting == "default" or (setting == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def precision_policy(setting):
    """``(policy, chosen_by)``: the Keras dtype policy for ``training.precision``, and what chose it
    (``params``, ``GPU`` or ``CPU``)."""
    if setting != "auto":
        return setting, "params"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16", "GPU"
    return "float32", "CPU"


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bfloat16 flags of :data:`BF16_FLAGS` this CPU reports (empty where it reports none)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return ()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(flag for flag in BF16_FLAGS if flag in flags)
    return ()
