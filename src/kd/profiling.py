"""What a model costs to run: parameters, FLOPs, file size and latency.

FLOPs are counted the way seed 002 counts them: the TF profiler's float-operation
count on a batch-1 concrete function of the model in inference mode, divided by 2 so
that a multiply-accumulate counts once. For seed 002's architectures this gives
11,021,029 (teacher), 3,073,557 (TA) and 1,237,941 (FC student).

Latency is a measurement, not a property: it is taken after warm-up, reported as the
median of many calls, and recorded with the machine it was taken on.
"""

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def count_params(model):
    """``(trainable, total)`` parameter counts."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    return trainable, int(model.count_params())


def count_flops(model):
    """Multiply-accumulates of one inference on one input, or ``None`` if the profiler fails.

    Returns ``(flops, note)``; ``note`` says why the count is missing when it is.
    """
    try:
        from tensorflow.python.profiler.model_analyzer import profile
        from tensorflow.python.profiler.option_builder import ProfileOptionBuilder
    except ImportError as error:
        return None, f"TF profiler unavailable: {error}"
    forward = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)],
    )
    options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # the v1 profiler warns that an API it uses is deprecated, at every call
    try:
        info = profile(forward.get_concrete_function().graph, options=options)
    except Exception as error:  # the v1 profiler can fail on exotic ops; say so, don't guess
        return None, f"TF profiler failed on model {model.name!r}: {error}"
    finally:
        logger.setLevel(level)
    return int(info.total_float_ops) // 2, None


def measure_latency(model, sample, settings):
    """Median ms of a batch-1 inference call, and images/s at the throughput batch size.

    ``settings`` is :class:`kd.params.EvaluateSpec`. ``sample`` holds at least one input
    image; the throughput batch repeats it. The model runs as a compiled ``tf.function``
    in inference mode, as it is served, not through ``predict``'s per-call overhead.
    """
    forward = tf.function(lambda x: model(x, training=False))
    single = tf.constant(sample[:1])
    batch = tf.constant(np.repeat(sample[:1], settings.throughput_batch_size, axis=0))

    def median_seconds(x, repeats):
        for _ in range(settings.latency_warmup):
            forward(x).numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(x).numpy()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {
        "latency_ms_batch1": round(1000 * median_seconds(single, settings.latency_repeats), 4),
        "throughput_per_s": round(
            settings.throughput_batch_size / median_seconds(batch, settings.throughput_repeats), 1
        ),
    }


def profile(model, path):
    """Parameters, FLOPs and file size of ``model`` saved at ``path``, and a note if FLOPs failed."""
    trainable, total = count_params(model)
    flops, note = count_flops(model)
    return {"params": total, "params_trainable": trainable, "flops": flops, "size_bytes": Path(path).stat().st_size}, note


def machine():
    """CPU model, core count and TF version, to record beside every latency."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
    }
