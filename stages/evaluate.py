"""Stage evaluate: test-set metrics of one model (and its agreement with its teacher) into metrics/<model>.json."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kd.errors import run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="model name, a key of train: or distill: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with test.npz")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--metrics", default="metrics", help="folder for <model>.json")
    args = parser.parse_args(argv)

    spec = load_params(args.params).model(args.model)
    from kd.artifacts import load_model, write_json
    from kd.data import load_split
    from kd.evaluation import evaluate

    models = Path(args.models)
    test = load_split(Path(args.data) / "test.npz")
    model = load_model(models / f"{spec.name}.keras")
    teacher = None
    if spec.teacher is not None:
        teacher = load_model(models / f"{spec.teacher}.keras", f"teacher {spec.teacher!r}")
    metrics = evaluate(model, test, teacher)
    write_json(Path(args.metrics) / f"{spec.name}.json", metrics)
    print(f"{spec.name}: " + ", ".join(f"{key} {value}" for key, value in metrics.items()))


if __name__ == "__main__":
    run_stage(main)
