"""Stage views: a teacher's outputs on `count` seeded augmented views of every training image.

Writes logits/views/<name>/ (the logits, any cached layers, the transformation of each view,
the mixup partners and coefficients, and views.json), which the students of distill_views:
that name these views learn from: the teacher's work of every epoch of every such student,
done once. See kd.views.
"""

import argparse
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)
os.environ["KERAS_BACKEND"] = "tensorflow"  # profiling, TFLite and decoding need it, whatever a model trained under

from kd.errors import ParamsError, run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("views", help="a key of views: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ split")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--logits", default="logits", help="folder of logits; the views go to <logits>/views/<name>/")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.views not in params.views:
        raise ParamsError(f"no views named {args.views!r} in params.yaml; views are: {', '.join(params.views) or 'none'}")
    views = params.views[args.views]
    from kd.artifacts import atomic_directory, load_model
    from kd.data import load_split
    from kd.models import check_models
    from kd.provenance import write_timing
    from kd.seeding import seed_everything
    from kd.views import check_cache_fits, compute_views

    train = load_split(Path(args.data) / "train")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    teacher_file = Path(args.models) / f"{views.teacher}.keras"
    teacher = load_model(teacher_file, f"teacher {views.teacher!r}")
    check_cache_fits(views, train, Path(args.logits) / "views" / views.name, teacher)  # the disk, before any work
    seed_everything(params.seed)
    mixed = f", each mixed with a partner (Beta({views.mixup}, {views.mixup}))" if views.mixup is not None else ""
    print(f"views@{views.name}: {views.count} views of each of {len(train):,} images through "
          f"{views.augmentation_name}{mixed}, judged by {views.teacher!r}"
          + (f"; caching its layers {', '.join(views.layers)}" if views.layers else ""))
    with atomic_directory(Path(args.logits) / "views" / views.name) as folder:  # all the files, or none
        folder.mkdir(parents=True)
        compute_views(views, teacher, train, folder, params.seed, teacher_file)
    write_timing(Path(args.timings) / f"{views.stage}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
