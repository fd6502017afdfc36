"""What the train@, distill@ and distill_views@ stages share around :func:`kd.training.fit`.

The arguments, the backend chosen before Keras is imported, the seed, and the outputs written
together or not at all: the model (models/<name>.keras), its logits on the training split
(logits/<name>.npy), which the models it teaches learn from, and its per-epoch curves
(dvclive/<name>/). The stage scripts differ only in what a model learns from: stages/train.py
from the labels, stages/distill.py also from its teachers, so only the latter depends on the
loss maths.
"""

import argparse
from pathlib import Path

from kd.errors import ParamsError
from kd.params import load_params
from kd.stage_kinds import KINDS


def arguments(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help="model name, a key of train:, distill: or distill_views: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ and validation/ splits")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--logits", default="logits", help="folder of training-set logits")
    parser.add_argument("--curves", default="dvclive", help="folder of per-model DVCLive curves")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    return parser.parse_args(argv)


def model_to_train(args, distilled):
    """The params and the spec of ``args.model``, refused unless it is trained here; its backend chosen."""
    params = load_params(args.params)
    spec = params.model(args.model)
    if spec.pretrained is not None:
        raise ParamsError(f"model {spec.name!r} is loaded from {spec.pretrained.path} by stage {spec.stage}, not trained")
    if (spec.distillation is not None) != distilled:
        kind = KINDS[spec.stage.split("@")[0]]
        raise ParamsError(f"model {spec.name!r} is trained by stage {spec.stage} ({kind.script})")
    from kd.devices import use_backend

    use_backend(spec.backend, f"training.backend of model {spec.name!r}")  # before Keras is imported
    if spec.distribution == "multi_worker":  # before any other TensorFlow work: collectives start first
        from kd.devices import multi_worker_strategy

        multi_worker_strategy()
    return params, spec


def train_and_write(params, spec, args, started, teachers_and_objective=None):
    """Train ``spec``'s model and write its outputs; ``teachers_and_objective(train, augmentation, seed)``
    gives a distilled model's :class:`kd.teachers.Teachers` and objective (called in the training scope)."""
    from kd.artifacts import atomic_directory, save_model, write_json
    from kd.batches import write_logits
    from kd.data import load_split
    from kd.devices import is_chief, training_scope
    from kd.models import build_model, check_models, float32_copy
    from kd.provenance import write_timing
    from kd.seeding import seed_everything
    from kd.training import fit

    models, logits = Path(args.models), Path(args.logits)
    seed = params.seed_of(spec)
    train, validation = load_split(Path(args.data) / "train"), load_split(Path(args.data) / "validation")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    augmentation = ", ".join(layer["class_name"] for layer in spec.augmentation) or "none"
    if spec.teacher is None:
        print(f"{spec.name}: training on hard labels; augmentation: {augmentation}")

    def train_model(curves):
        with training_scope(spec) as setup:
            model = build_model(spec, train.image_shape, train.num_classes)
            model.summary()
            teachers, objective = None, None
            if teachers_and_objective is not None:
                teachers, objective = teachers_and_objective(train, augmentation, seed)
            fit(model, spec, train, validation, seed, teachers, curves_dir=curves, objective=objective)
        return model, setup

    seed_everything(seed)
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
    write_timing(Path(args.timings) / f"{spec.stage}.json", started)
