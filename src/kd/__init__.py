"""kd: knowledge distillation for Keras, one model at a time, driven by DVC.

Modules, one concept each:

- ``errors``:    the exceptions that mean "your input is wrong", and the stage runner.
- ``console``:   TensorFlow's start-up noise filtered from a stage's stderr.
- ``params``:    load and validate ``params.yaml`` into typed specs.
- ``data``:      data sources (packaged, .npz, image folders), value checks, the split, split files.
- ``models``:    build models (layer lists, keras.applications), augmentations and optimizers
                 (with schedules) from Keras configs, and check all of them before any work.
- ``pretrained``: a teacher trained elsewhere, loaded from its file and checked.
- ``losses``:    the distillation objective: a weighted sum of named terms (hinton, dkd, dist,
                 hint, attention, rkd), over one or several teachers.
- ``keras_distillation``: the label-free logit terms as ``keras.distillation`` losses, for Keras's Distiller.
- ``teachers``:  where a student's teachers come from: cached logits, or the models online.
- ``training``:  the one training path for every model, with or without teachers.
- ``devices``:   the distribution strategy and precision policy training runs under.
- ``evaluation``: test-set metrics of a trained model.
- ``export``:    SavedModel, float32 and int8 TFLite files, measured through LiteRT.
- ``profiling``: parameters, FLOPs, size and latency of a model.
- ``comparison``: all models (and exported files) side by side: table, ratios, plots.
- ``pruning``:   what models no longer in params.yaml left behind, removed.
- ``artifacts``: atomic, byte-stable writing and safe loading of files.
- ``provenance``: seed, library versions and wall time recorded beside results.
- ``seeds``:     one configuration over several seeds: mean ± std and which gains are real.
"""

import os

__version__ = "0.4.0"  # the one place it is written: pyproject.toml reads it, CHANGELOG.md names it

# Keep TensorFlow's C++ INFO and WARNING lines (tf.data end-of-sequence notices and the
# like) out of DVC's log, where the per-epoch lines should stand out. Errors still show;
# a user's own setting wins. (The few lines TF prints before its logging starts remain.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
