"""kd: knowledge distillation for Keras, one model at a time, driven by DVC.

Modules, one concept each:

- ``errors``:    the exceptions that mean "your input is wrong", and the stage runner.
- ``params``:    load and validate ``params.yaml`` into typed specs.
- ``data``:      data sources, the train/validation split, prepared-array files.
- ``models``:    build models, augmentations and optimizers (with schedules) from Keras configs.
- ``losses``:    the Hinton distillation loss.
- ``training``:  the one training path for every model, with or without a teacher
                 (cached teacher logits, or the teacher run online on augmented batches).
- ``devices``:   the distribution strategy and precision policy training runs under.
- ``evaluation``: test-set metrics of a trained model.
- ``profiling``: parameters, FLOPs, size and latency of a model.
- ``comparison``: all models side by side: table, ratios, plots.
- ``artifacts``: atomic, byte-stable writing and safe loading of files.
- ``provenance``: seed, library versions and wall time recorded beside results.
- ``seeds``:     one configuration over several seeds: mean ± std and which gains are real.
"""

import os

# Keep TensorFlow's C++ INFO and WARNING lines (tf.data end-of-sequence notices and the
# like) out of DVC's log, where the per-epoch lines should stand out. Errors still show;
# a user's own setting wins. (The few lines TF prints before its logging starts remain.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
