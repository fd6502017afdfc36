"""Where training runs: the Keras backend, the distribution and the numeric precision.

All three are chosen from params (``training.backend``, ``training.distribution``,
``training.precision``), per model:

- backend ``tensorflow`` (default), ``jax`` or ``torch``: :func:`use_backend` sets
  ``KERAS_BACKEND`` before Keras is first imported (a stage calls it once it knows its model);
  a stage that trains under JAX or PyTorch imports no TensorFlow. The ``.keras`` files are
  backend-neutral, so FLOPs, export and evaluate run under TensorFlow whatever trained a model.
- distribution ``auto``: on TensorFlow, ``MirroredStrategy`` over the GPUs when there are several,
  else one device; on JAX, ``keras.distribution.DataParallel`` over the devices when there are
  several; on PyTorch, one device. ``mirrored`` forces the several-device form (TensorFlow: every
  GPU, or every logical CPU device when there is no GPU; JAX: every device); ``default`` forces one
  device; ``multi_worker`` (TensorFlow only): ``MultiWorkerMirroredStrategy`` over the machines that
  ``TF_CONFIG`` lists (:func:`multi_worker_strategy`), every worker running the stage, the chief
  (worker 0) alone writing its outputs.
- precision ``auto``: ``mixed_float16`` when a GPU is present, else ``float32``. Not bfloat16
  on CPUs that have it: over three seeds of the default pipeline, ``mixed_bfloat16`` cost
  ``student_direct`` accuracy beyond seed noise, and a default that depended on the CPU would
  give different models on different machines (docs/speed.md). Name ``mixed_bfloat16`` (or any
  Keras dtype policy) to use it. Under a mixed policy the weights stay float32 and the loss,
  softmax and metrics are computed in float32; the saved model is a float32 model
  (:func:`kd.models.float32_copy`), so serving and export do not depend on it.
"""

import contextlib
import importlib.util
import os
import sys

from kd.errors import ParamsError

BACKENDS = ("tensorflow", "jax", "torch")
# The backends other than TensorFlow are extras of the kd package (pyproject.toml), so that the
# default pipeline installs neither; `make backends` installs both into .venv.
INSTALL = {"tensorflow": "make install (or pip install -e .)", "jax": "make backends (or pip install -e '.[jax]')",
           "torch": "make backends (or pip install -e '.[torch]')"}


def require_backend(backend, key="training.backend"):
    """Refuse, naming ``key`` and the install command, a backend whose package is not installed."""
    if importlib.util.find_spec(backend) is None:
        raise ParamsError(f"{key}: {backend}, but the package {backend!r} is not installed: {INSTALL[backend]}")


def use_backend(backend, key="training.backend"):
    """Make ``backend`` Keras's backend for this process; call before anything imports Keras."""
    require_backend(backend, key)
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"Keras was imported with backend {keras.backend.backend()!r} before "
                               f"{backend!r} was chosen")
    os.environ["KERAS_BACKEND"] = backend
    if backend != "tensorflow":
        import keras  # noqa: F401  (now, with the backend chosen)
        from keras.src.utils import module_utils

        # Keras imports TensorFlow wherever it is installed for interop kd does not use off
        # TensorFlow (tf.TensorShape checks when saving, tf.data adapters): seconds of start-up and
        # a second framework's memory in a JAX or PyTorch stage. Tell it TensorFlow is absent.
        module_utils.tensorflow._available = False


def backend():
    import keras

    return keras.backend.backend()


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
    import tensorflow as tf

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
    """The ``tf.distribute`` strategy for ``training.distribution`` (TensorFlow backend)."""
    import tensorflow as tf

    if setting == "multi_worker":
        return multi_worker_strategy()
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if setting == "default" or (setting == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


@contextlib.contextmanager
def distribution_scope(setting):
    """Enter the distribution of ``training.distribution`` on the current backend; yield its replicas."""
    name = backend()
    if name == "tensorflow":
        strategy = strategy_for(setting)
        with strategy.scope():
            yield strategy.num_replicas_in_sync, type(strategy).__name__
        return
    if setting == "multi_worker":
        raise ParamsError(f"training.distribution: multi_worker is TensorFlow's MultiWorkerMirroredStrategy; "
                          f"the {name} backend has no such strategy in kd: use tensorflow, or one machine")
    if name == "jax":
        import keras

        devices = keras.distribution.list_devices()
        if setting == "mirrored" or (setting == "auto" and len(devices) > 1):
            distribution = keras.distribution.DataParallel(devices=devices)
            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(distribution)
            try:
                yield len(devices), "DataParallel"
            finally:
                keras.distribution.set_distribution(previous)
            return
    elif setting == "mirrored":
        raise ParamsError("training.distribution: mirrored needs tensorflow or jax; the torch backend trains on "
                          "one device in kd")
    yield 1, "one device"


def has_gpu():
    """Whether the current backend sees a GPU."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    import torch

    return torch.cuda.is_available()


def precision_policy(setting):
    """``(policy, chosen_by)``: the Keras dtype policy for ``training.precision``, and what chose it
    (``params``, ``GPU`` or ``CPU``)."""
    if setting != "auto":
        return setting, "params"
    if has_gpu():
        return "mixed_float16", "GPU"
    return "float32", "CPU"


@contextlib.contextmanager
def training_scope(spec):
    """Set the precision policy and enter the distribution strategy of ``spec``; yield what was chosen.

    Build the model and call :func:`kd.training.fit` inside it: variables must be created under the
    strategy and with the policy they will be trained with. Yields ``{"precision",
    "chosen_by", "replicas"}``, which the stage records beside the curves.
    """
    import keras

    policy, reason = precision_policy(spec.precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with distribution_scope(spec.distribution) as (replicas, how):
            print(f"{spec.name}: {replicas} replica(s) ({how}), {policy} (chosen by {reason}), "
                  f"{keras.backend.backend()} backend")
            setup = {"precision": policy, "chosen_by": reason, "replicas": replicas}
            if keras.backend.backend() != "tensorflow":  # TensorFlow, the default, goes unsaid
                setup["backend"] = keras.backend.backend()
            yield setup
    finally:
        keras.config.set_dtype_policy(previous)


def current_strategy():
    """TensorFlow's current ``tf.distribute`` strategy (the data path shards for it), or None elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.distribute.get_strategy()
