"""Stage evaluate: every model's test metrics and cost profile, and their comparison.

Writes metrics/<model>.json (test accuracy, errors, loss, agreement with its teacher,
params, FLOPs, file size: deterministic, and few, so `dvc metrics show` stays readable),
metrics/exported/<model>.<float32|int8>.json (the same for each exported TFLite file, run
through LiteRT, agreement taken with its float model),
reports/comparison.json and .md (all of it side by side, with latency, throughput, ratios
against the teacher, gains, the seed and library versions), and plots/ (test accuracy
against FLOPs, every per-epoch curve of every model). It also removes what models no
longer in params.yaml left behind (see kd.pruning).
All models are measured in one process, so their latencies compare fairly.
"""

import argparse
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)
os.environ["KERAS_BACKEND"] = "tensorflow"  # profiling, TFLite and decoding need it, whatever a model trained under

from kd.errors import run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the test/ split")
    parser.add_argument("--models", default="models", help="folder of model files")
    parser.add_argument("--curves", default="dvclive", help="folder of per-model DVCLive curves")
    parser.add_argument("--logits", default="logits", help="folder of training-set logits (pruned only)")
    parser.add_argument("--exported", default="exported", help="folder of exported models (<model>/*.tflite)")
    parser.add_argument("--metrics", default="metrics", help="folder for <model>.json and comparison.*")
    parser.add_argument("--plots", default="plots", help="folder for the comparison plots")
    parser.add_argument("--reports", default="reports", help="folder for comparison.json and comparison.md")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    from dataclasses import asdict

    from kd.artifacts import atomic_path, load_model, write_json
    from kd.comparison import (EXPORT_HEADLINE, EXPORT_KINDS, HEADLINE, compare, exported_row, markdown,
                               training_setup, write_plots)
    from kd.data import load_split
    from kd.evaluation import test_metrics
    from kd.export import evaluate_tflite
    from kd.models import check_models
    from kd.profiling import machine, measure_latency, profile
    from kd.provenance import provenance, write_timing
    from kd.pruning import remove_stale
    from kd.batches import predict_logits

    models_dir, metrics_dir, plots_dir = Path(args.models), Path(args.metrics), Path(args.plots)
    for path in remove_stale(params, args.models, args.logits, args.curves, args.timings, args.exported):
        print(f"removed {path}: its model or export is no longer in params.yaml")
    test = load_split(Path(args.data) / "test")
    check_models(params, test.image_shape, test.num_classes)  # every model, before any work
    x_test = test.images  # read a batch at a time
    paths = {name: models_dir / f"{name}.keras" for name in params.models}
    models = {name: load_model(path, f"model {name!r}") for name, path in paths.items()}
    logits = {name: predict_logits(model, x_test) for name, model in models.items()}

    metrics, latencies = {}, {}
    for name, spec in params.models.items():
        cost, note = profile(models[name], paths[name])
        if note:
            print(f"{name}: FLOPs not counted: {note}")
        metrics[name] = {**test_metrics(logits[name], test.y, logits.get(spec.teacher)), **cost,
                         **training_setup(Path(args.curves) / name)}
        write_json(metrics_dir / f"{name}.json", {k: v for k, v in metrics[name].items() if k in HEADLINE})
        latencies[name] = measure_latency(models[name], x_test[:1], params.evaluate)
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in {**metrics[name], **latencies[name]}.items()))

    # The shipped files, measured like every model: accuracy, agreement with their float model, size, latency.
    exported = {}
    for name in params.export.models:
        for kind in EXPORT_KINDS:
            measured = evaluate_tflite(Path(args.exported) / name / f"{kind}.tflite", x_test, test.y, logits[name],
                                       warmup=params.evaluate.latency_warmup, repeats=params.evaluate.latency_repeats)
            row = exported_row(name, kind, measured, metrics[name])
            exported[f"{name} · {kind}"] = row
            write_json(metrics_dir / "exported" / f"{name}.{kind}.json",
                       {k: v for k, v in row.items() if k in EXPORT_HEADLINE})
            print(f"{name} · {kind}: " + ", ".join(f"{k} {v}" for k, v in row.items()))

    comparison = compare(params, metrics, latencies)
    measured_on = {**machine(), **asdict(params.evaluate)}
    data = {"classes": list(test.class_names), "test_images": len(test)}
    reports = Path(args.reports)
    write_json(reports / "comparison.json",
               {"models": comparison, "exported": exported, "data": data, "measured_on": measured_on,
                **provenance(params.seed)})
    with atomic_path(reports / "comparison.md") as temporary:
        temporary.write_text(markdown(comparison, measured_on, exported))

    write_plots(comparison, args.curves, plots_dir, exported)
    write_timing(Path(args.timings) / "evaluate.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
