"""Where training runs: the ``tf.distribute`` strategy and the numeric precision.

Both are chosen from params (``training.distribution``, ``training.precision``), ``auto``
by default:

- distribution ``auto``: ``MirroredStrategy`` over the GPUs when there are several, else
  TensorFlow's default strategy (one device); ``mirrored`` forces ``MirroredStrategy``
  over every GPU, or over every logical CPU device when there is no GPU; ``default``
  forces one device.
- precision ``auto``: ``mixed_float16`` when a GPU is present, ``float32`` on CPU (where
  half precision is slower, not faster); or name a Keras dtype policy yourself.
"""

import tensorflow as tf


def strategy_for(setting):
    """The ``tf.distribute`` strategy for ``training.distribution``."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if setting == "default" or (setting == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def precision_policy(setting):
    """The Keras dtype policy name for ``training.precision``."""
    if setting == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return setting
