"""What produced a result and what it took: the seed, the library versions, a stage's wall time."""

import platform
import time


def provenance(seed):
    """``{"seed": ..., "versions": {...}}`` for the running process."""
    import keras
    import numpy
    import tensorflow

    return {
        "seed": seed,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tensorflow.__version__,
            "keras": keras.__version__,
            "numpy": numpy.__version__,
        },
    }


def write_timing(path, started):
    """Write the wall time since ``started`` (a ``time.perf_counter()``) to ``path`` as JSON."""
    from kd.artifacts import write_json

    write_json(path, {"seconds": round(time.perf_counter() - started, 1)})
