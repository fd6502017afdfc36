"""Stage pretrained: bring a model trained elsewhere into the pipeline, like a trained one.

Loads pretrained.<name>.path (a .keras or .h5 file) in safe mode, checks it against the data
and its declared outputs (see kd.pretrained), and writes models/<name>.keras (its logits as
output) and logits/<name>.npy (its logits on the training split, which its students learn
from). Replacing the file reruns this stage and what depends on it, and nothing else.
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
    parser.add_argument("model", help="model name, a key of pretrained: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ split")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--logits", default="logits", help="folder of training-set logits")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    spec = params.model(args.model)
    if spec.pretrained is None:
        raise ParamsError(f"model {args.model!r} is not in pretrained: (it is trained by stage {spec.stage})")
    from kd.artifacts import save_model
    from kd.batches import write_logits
    from kd.data import load_split
    from kd.models import check_models
    from kd.pretrained import load_pretrained
    from kd.provenance import write_timing

    train = load_split(Path(args.data) / "train")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    model = load_pretrained(spec, train.image_shape, train.num_classes)
    print(f"{spec.name}: {spec.pretrained.path}, {model.count_params():,} parameters, outputs "
          f"{spec.pretrained.outputs}" + (" (final softmax removed: logits)" if spec.pretrained.outputs == "probabilities"
                                           else ""))
    save_model(model, Path(args.models) / f"{spec.name}.keras")
    write_logits(model, train.images, Path(args.logits) / f"{spec.name}.npy")
    write_timing(Path(args.timings) / f"{spec.stage}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
