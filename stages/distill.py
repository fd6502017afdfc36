"""Stage distill: train one model of `distill:` or `distill_views:` from its teachers.

A model with a teacher learns from the teacher's cached logits (logits/<teacher>.npy), from the
teacher's cached outputs on augmented views (logits/views/<views>/), or, when its inputs are
augmented or its loss reads the teacher's layers, from the teacher model itself
(models/<teacher>.keras) run on each batch; the log says which and why. Writes what
stages/train.py writes.
"""

import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)

from kd.errors import run_stage  # noqa: E402
from kd.training_stage import arguments, model_to_train, train_and_write  # noqa: E402


def main(argv=None):
    args = arguments(__doc__, argv)
    params, spec = model_to_train(args, distilled=True)

    def teachers_and_objective(train, augmentation, seed):
        from kd.losses.objective import Objective
        from kd.teachers import describe, load_teachers

        teachers = load_teachers(spec, Path(args.models), Path(args.logits), len(train), train.num_classes, train,
                                 seed)
        print(f"{spec.name}: distilling from {describe(spec.distillation)} with {teachers.reason}; "
              f"augmentation: {augmentation}")
        return teachers, Objective.of(spec.distillation, seed)

    train_and_write(params, spec, args, STARTED, teachers_and_objective)


if __name__ == "__main__":
    run_stage(main)
