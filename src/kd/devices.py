"""Where training runs: the ``tf.distribute`` strategy and the numeric precision.

Both are chosen from params (``training.distribution``, ``training.precision``), ``auto``
by default:

- distribution ``auto``: ``MirroredStrategy`` over the GPUs when there are several, else
  TensorFlow's default strategy (one device); ``mirrored`` forces ``MirroredStrategy``
  over every GPU, or over every logical CPU device when there is no GPU; ``default``
  forces one device; ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the machines
  that ``TF_CONFIG`` lists (:func:`multi_worker_strategy`), every worker running the stage,
  the chief (worker 0) alone writing its outputs.
- precision ``auto``: ``mixed_float16`` when a GPU is present, else ``float32``. Not bfloat16
  on CPUs that have it: over three seeds of the default pipeline, ``mixed_bfloat16`` cost
  ``student_direct`` accuracy beyond seed noise; it was twice as slow as float32 on a CPU with
  AVX512-BF16 alone; and a default that depended on the CPU would give different models on
  different machines (README: Speed). Name ``mixed_bfloat16`` (or any Keras dtype policy) to
  use it. Under a mixed policy the weights stay float32 and the loss, softmax and metrics are
  computed in float32; the saved model is a float32 model (:func:`kd.models.float32_copy`), so
  serving and export do not depend on it.
"""

import tensorflow as tf


_multi_worker = {}


def tf_config(environ=None):
    """The cluster of ``TF_CONFIG``, checked: ``(workers, index)``; a ParamsError names what is wrong."""
    import json
    import os

    from kd.errors import ParamsError

    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    what = "training.distribution: multi_worker needs the environment variable TF_CONFIG"
    example = ' (e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}})'
    if not raw:
        raise ParamsError(f"{what}, which is not set{example}")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ParamsError(f"{what} to be JSON; found {raw[:80]!r} ({error.msg}){example}") from None
    workers = (config.get("cluster") or {}).get("worker") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ParamsError(f"{what}'s cluster.worker to list host:port addresses; found {workers!r}{example}")
    if not isinstance(task, dict) or task.get("type") != "worker" or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(workers):
        raise ParamsError(f"{what}'s task to be {{type: worker, index: 0..{len(workers) - 1}}}; found {task!r}")
    return workers, task["index"]


def multi_worker_strategy():
    """The ``MultiWorkerMirroredStrategy`` of ``TF_CONFIG``, created once.

    TensorFlow configures collective ops at start-up: call this before any other TensorFlow
    work in the process (the train stage does, for ``distribution: multi_worker``).
    """
    if "strategy" not in _multi_worker:
        workers, index = tf_config()
        _multi_worker["strategy"] = tf.distribute.MultiWorkerMirroredStrategy()
        _multi_worker["chief"] = index == 0
        print(f"multi_worker: worker {index} of {len(workers)} ({', '.join(workers)})")
    return _multi_worker["strategy"]


def is_chief():
    """False only on a non-chief worker of a multi-worker run: it trains but writes nothing."""
    return _multi_worker.get("chief", True)


def strategy_for(setting):
    """The ``tf.distribute`` strategy for ``training.distribution``."""
    if setting == "multi_worker":
        return multi_worker_strategy()
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
