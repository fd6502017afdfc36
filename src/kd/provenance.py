"""What produced a result: the seed and the versions of the libraries, for every metrics file."""

import platform


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
