"""Same params and seed, same numbers: the seeds of Python, NumPy and the backend, and its deterministic ops."""

import numpy as np
import keras


def seed_everything(seed):
    """Seed Python, NumPy and the backend, and make its ops deterministic: same params, same numbers.

    (TensorFlow needs op determinism turned on; JAX is deterministic on CPU; PyTorch is asked to
    refuse nondeterministic algorithms.)
    """
    set_random_seed(seed)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def set_random_seed(seed):
    """``keras.utils.set_random_seed`` without importing TensorFlow where it is not the backend.

    Keras's seeds TensorFlow too whenever it is installed, which imports it (seconds, and a second
    framework in the process); elsewhere this does the rest of what Keras's does.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    import random

    # Private: Keras exports no way to reset its global seed generator but set_random_seed itself.
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)
