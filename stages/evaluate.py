"""Stage evaluate: every model's test metrics and cost profile, and their comparison.

Writes metrics/<model>.json (test accuracy, loss, errors, agreement with its teacher,
params, FLOPs, file size: all deterministic), metrics/comparison.json and
reports/comparison.md (the same side by side, with latency and ratios against the
teacher), and plots/ (test accuracy against FLOPs, validation accuracy and loss per
epoch of every model). The Markdown lives outside metrics/ because DVC parses every
file there as metrics.
All models are measured in one process, so their latencies compare fairly.
"""

import argparse
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kd.errors import run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with test.npz")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--curves", default="dvclive", help="folder of per-model DVCLive curves")
    parser.add_argument("--metrics", default="metrics", help="folder for <model>.json and comparison.*")
    parser.add_argument("--plots", default="plots", help="folder for the comparison plots")
    parser.add_argument("--reports", default="reports", help="folder for comparison.md")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    from dataclasses import asdict

    from kd.artifacts import atomic_path, load_model, write_json
    from kd.comparison import compare, markdown, write_plots
    from kd.data import load_split
    from kd.evaluation import test_metrics
    from kd.profiling import machine, measure_latency, profile
    from kd.provenance import provenance, write_timing
    from kd.training import predict_logits

    models_dir, metrics_dir, plots_dir = Path(args.models), Path(args.metrics), Path(args.plots)
    test = load_split(Path(args.data) / "test.npz")
    x_test = test.inputs
    paths = {name: models_dir / f"{name}.keras" for name in params.models}
    models = {name: load_model(path, f"model {name!r}") for name, path in paths.items()}
    logits = {name: predict_logits(model, x_test) for name, model in models.items()}

    metrics, latencies = {}, {}
    for name, spec in params.models.items():
        cost, note = profile(models[name], paths[name])
        if note:
            print(f"{name}: FLOPs not counted: {note}")
        metrics[name] = {**test_metrics(logits[name], test.y, logits.get(spec.teacher)), **cost, **provenance(params.seed)}
        write_json(metrics_dir / f"{name}.json", metrics[name])
        latencies[name] = measure_latency(models[name], x_test[:1], params.evaluate)
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in {**metrics[name], **latencies[name]}.items() if k != "versions"))

    comparison = compare(params, metrics, latencies)
    measured_on = {**machine(), **asdict(params.evaluate)}
    write_json(metrics_dir / "comparison.json", {**comparison, "measured_on": measured_on})
    with atomic_path(Path(args.reports) / "comparison.md") as temporary:
        temporary.write_text(markdown(comparison, measured_on))

    write_plots(comparison, args.curves, plots_dir)
    write_timing(Path(args.timings) / "evaluate.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
