"""Stage train / distill: train one model named in params.yaml, from its teacher if it has one.

A model with a teacher learns from the teacher's cached logits (logits/<teacher>.npy),
or, when its inputs are augmented or its loss reads the teacher's layers, from the teacher
model itself (models/<teacher>.keras) run on each batch; the log says which and why.
Writes the model (models/<name>.keras), its logits on the training split
(logits/<name>.npy), which the models it teaches learn from, and its per-epoch curves
(dvclive/<name>/).
"""

import argparse
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included

from kd.errors import ParamsError, run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="model name, a key of train: or distill: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ and validation/ splits")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--logits", default="logits", help="folder of training-set logits")
    parser.add_argument("--curves", default="dvclive", help="folder of per-model DVCLive curves")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    spec = params.model(args.model)
    if spec.pretrained is not None:
        raise ParamsError(f"model {spec.name!r} is loaded from {spec.pretrained.path} by stage {spec.stage}, not trained")
    from kd.devices import use_backend

    use_backend(spec.backend, f"training.backend of model {spec.name!r}")  # before Keras is imported
    if spec.distribution == "multi_worker":  # before any other TensorFlow work: collectives start first
        from kd.devices import multi_worker_strategy

        multi_worker_strategy()
    # Heavy imports only once params are known to be good.
    from kd.artifacts import atomic_directory, save_model, write_json
    from kd.batches import write_logits
    from kd.data import load_split
    from kd.models import build_model, check_models, float32_copy
    from kd.devices import is_chief
    from kd.provenance import write_timing
    from kd.teachers import describe, load_teachers
    from kd.training import fit, seed_everything, training_scope

    models, logits = Path(args.models), Path(args.logits)
    train, validation = load_split(Path(args.data) / "train"), load_split(Path(args.data) / "validation")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    augmentation = ", ".join(layer["class_name"] for layer in spec.augmentation) or "none"
    if spec.teacher is None:
        print(f"{spec.name}: training on hard labels; augmentation: {augmentation}")

    def train_model(curves):
        with training_scope(spec) as setup:
            model = build_model(spec, train.image_shape, train.num_classes)
            model.summary()
            teachers = None
            if spec.distillation is not None:
                teachers = load_teachers(spec, models, logits, len(train), train.num_classes, train, params.seed)
                print(f"{spec.name}: distilling from {describe(spec.distillation)} with {teachers.reason}; "
                      f"augmentation: {augmentation}")
            fit(model, spec, train, validation, params.seed, teachers, curves_dir=curves)
        return model, setup

    seed_everything(params.seed)
    if not is_chief():  # a multi-worker run: every worker trains, the chief alone writes the outputs
        train_model(None)
        print(f"{spec.name}: trained as a non-chief worker; the chief writes the outputs")
        return
    # The curves appear with the model, or not at all: a killed run leaves no partial curve.
    with atomic_directory(Path(args.curves) / spec.name) as curves:
        model, setup = train_model(curves)
        write_json(curves / "training.json", setup)  # read by evaluate into the model's metrics
        model = float32_copy(model, spec)  # trained under a mixed policy, served in float32
        save_model(model, models / f"{spec.name}.keras")
        write_logits(model, train.images, logits / f"{spec.name}.npy")
    write_timing(Path(args.timings) / f"{spec.stage}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
