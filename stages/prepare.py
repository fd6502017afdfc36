"""Stage prepare: read the data source, carve the validation split, write data/{train,validation,test}.npz."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kd.data import read_source, split, write_splits  # noqa: E402
from kd.errors import run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data", help="folder for the split files")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    splits = split(*read_source(params.data.source), params.data.validation_fraction, params.data.limit, params.seed)
    write_splits(splits, args.out)
    for name, part in splits.items():
        print(f"{name}: {len(part)} images of shape {part.x.shape[1:]}, {part.num_classes} classes")


if __name__ == "__main__":
    run_stage(main)
