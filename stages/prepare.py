"""Stage prepare: read the data source, carve the validation split, write data/{train,validation,test}/."""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)
os.environ["KERAS_BACKEND"] = "tensorflow"  # profiling, TFLite and decoding need it, whatever a model trained under

from kd.data import read_source, split, write_splits  # noqa: E402
from kd.errors import run_stage  # noqa: E402
from kd.models import check_models  # noqa: E402
from kd.params import load_params  # noqa: E402
from kd.provenance import write_timing  # noqa: E402
from kd.views import check_every_cache_fits  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data", help="folder for the split files")
    parser.add_argument("--logits", default="logits", help="folder the views stages write to (<logits>/views/), "
                        "checked for room")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    decoding = Path(args.out) / f".decoding-{os.getpid()}"  # an image folder's decoded images, until split
    try:
        dataset = read_source(params.data, params.seed, folder_for_decoding=decoding)
        splits = split(dataset, params.data.validation_fraction, params.data.limit, params.seed,
                       params.data.num_classes)
        check_models(params, splits["train"].image_shape, splits["train"].num_classes)  # every model, before any work
        check_every_cache_fits(params, splits["train"], Path(args.logits) / "views")  # every views entry's size too
        write_splits(splits, args.out)
    finally:
        shutil.rmtree(decoding, ignore_errors=True)
    for name, part in splits.items():
        print(f"{name}: {len(part)} images of shape {part.image_shape}, {part.num_classes} classes")
    write_timing(Path(args.timings) / "prepare.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
