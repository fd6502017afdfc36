"""Stage export: ship one trained model as a SavedModel, a float32 TFLite and an int8 TFLite file.

The int8 file is full-integer (int8 in and out) post-training quantization, calibrated on
`export.representative_images` training images drawn with the seed. Writes exported/<model>/
(saved_model/, float32.tflite, int8.tflite); the evaluate stage measures the TFLite files on
the test set beside every model.
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
    parser.add_argument("model", help="model name, one of export.models in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ split (the representative images)")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--out", default="exported", help="folder for <model>/")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.model not in params.export.models:
        raise ParamsError(f"model {args.model!r} is not in export.models ({', '.join(params.export.models) or 'none'})")
    import numpy as np

    from kd.artifacts import atomic_directory, load_model
    from kd.data import load_split
    from kd.export import convert_tflite, export_saved_model, write_tflite
    from kd.models import check_models
    from kd.provenance import write_timing

    train = load_split(Path(args.data) / "train")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    model = load_model(Path(args.models) / f"{args.model}.keras", f"model {args.model!r}")
    count = min(params.export.representative_images, len(train))
    chosen = np.sort(np.random.default_rng(params.seed).permutation(len(train))[:count])
    representative = train.images[chosen]
    with atomic_directory(Path(args.out) / args.model) as folder:  # all three files, or none
        export_saved_model(model, folder / "saved_model")
        write_tflite(folder / "float32.tflite", convert_tflite(folder / "saved_model", name=args.model))
        write_tflite(folder / "int8.tflite", convert_tflite(folder / "saved_model", representative, name=args.model))
    for path in sorted((Path(args.out) / args.model).glob("*.tflite")):
        print(f"{args.model}: {path} ({path.stat().st_size:,} bytes)")
    write_timing(Path(args.timings) / f"export@{args.model}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
