"""`make tune MODEL=<name>`: search a distilled model's settings on the validation split, then test the best.

Trials (``tune:`` in params.yaml says how many, how drawn, over which keys: :mod:`kd.tuning`) run one
after another, each a DVC experiment ``tune-<model>-<tag>-NN`` made by ``dvc exp run --temp
<model's stage>``: only that model's stage reruns, from the teachers' outputs DVC has cached, in a
temporary copy of the repository, so the workspace and its params.yaml stay as they are. Trial 00
is the current settings. ``<tag>`` is a hash of the params and the search: the same search on the same
commit resumes, reusing the trials that finished; an edit starts a new one.

Each trial is scored on its validation accuracy, as its stage logged it (dvclive/<model>/metrics.json).
Then the verdict: the best and the current settings trained again with each of ``tune.seeds`` as the
model's own seed (its teacher stays the pipeline's), and tested; the report goes to
reports/tune/<model>.md and .json (``<model>-<config>`` with ``--config``), the search's points to
reports/tune/trials/<model>.json, which dvc.yaml plots (not under plots/: the evaluate stage owns it).

    python tools/tune.py student                      # search, verdict, report
    python tools/tune.py student --config views       # the same in configs/views.txt's configuration
    python tools/tune.py student --search-only        # the search alone: the test split is not read
    python tools/tune.py student --apply              # and apply the best settings (dvc exp apply)
"""

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kd.artifacts import atomic_path, write_json
from kd.errors import KdError, ParamsError, run_stage
from kd.records import record
from kd.tuning import (
    best_trial, check_search, current_value, draw, entry_with, markdown, overrides, settings_text, validate, verdict,
)

from dvc_env import dvc_environment  # tools/, beside this script
from seeds import overrides as config_overrides, params_with  # configs/<name>.txt's lines; params.yaml with them


def dvc(*args, capture=False):
    result = subprocess.run(["dvc", *args], text=True, capture_output=capture, env=dvc_environment("tune"))
    if result.returncode != 0:
        raise KdError(f"`dvc {' '.join(args)}` failed" + (f": {result.stderr.strip()}" if capture else ""))
    return result.stdout


def finished(prefix):
    """``{name: revision}`` of this commit's experiments whose names start with ``prefix``."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], text=True, capture_output=True, check=True).stdout.strip()
    found = {}
    for commit in json.loads(dvc("exp", "show", "--json", capture=True) or "[]"):
        if commit["rev"] != head:
            continue
        for experiment in commit.get("experiments") or []:
            name, revision = experiment.get("name") or "", experiment["revs"][0]
            state = (experiment.get("executor") or {}).get("state", "success")
            if name.startswith(prefix) and state == "success" and not revision.get("error"):
                found[name] = revision["rev"]
    return found


def run_experiment(name, stage, lines):
    """``dvc exp run --temp``; a stop (Ctrl-C, SIGTERM) stops it too, and a failed run is the user's to read."""
    print(f"$ dvc exp run --temp {stage} -n {name} " + " ".join(f"-S '{line}'" for line in lines), flush=True)
    # Its own process group: a stop reaches DVC and the stage it runs. The stop is SIGINT, as Ctrl-C in
    # a terminal: while DVC stashes a trial it writes the trial's params into the workspace's params.yaml
    # and detaches HEAD, and only an interrupt lets its `finally` put both back (SIGTERM ends it midway).
    # The trial runs in a temporary copy, so stopping its stage there leaves nothing half-made here.
    process = subprocess.Popen(["dvc", "exp", "run", "--temp", stage, "-n", name, *(f"-S{line}" for line in lines)],
                               env=dvc_environment("tune"), start_new_session=True)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise
    return code == 0


def validation_score(model, name):
    import dvc.api

    accuracy = json.loads(dvc.api.read(f"dvclive/{model}/metrics.json", rev=name))["eval"]["accuracy"]
    images = json.loads(dvc.api.read("data/validation/split.json", rev=name))["images"]
    return accuracy, images


def test_score(model, name, folder):
    """Test metrics of experiment ``name``'s model, on its test split (fetched from DVC's cache)."""
    from dvc.api import DVCFileSystem

    from kd.artifacts import load_model
    from kd.batches import predict_logits
    from kd.data import load_split
    from kd.evaluation import test_metrics

    filesystem = DVCFileSystem(".", rev=name)
    target = Path(folder) / name
    filesystem.get("data/test", str(target / "test"), recursive=True)
    filesystem.get(f"models/{model}.keras", str(target / "model.keras"))
    test = load_split(target / "test")
    return test_metrics(predict_logits(load_model(target / "model.keras", f"model {model!r}"), test.images), test.y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model of distill: or distill_views:")
    parser.add_argument("--config", default="default", help="default, or a configs/<name>.txt applied to every run")
    parser.add_argument("--search-only", action="store_true", help="no verdict: the test split is not read")
    parser.add_argument("--apply", action="store_true", help="apply the best trial to the workspace (dvc exp apply)")
    parser.add_argument("--out", default="reports/tune")
    parser.add_argument("--plots", default="reports/tune/trials", help="for <model>.json, a plot of dvc.yaml")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    dvc_environment("tune")  # without DVC, fails here in one line

    lines = config_overrides(args.config)
    raw = params_with(lines)
    params = validate(raw)
    if params.tune is None:
        raise ParamsError("tune: missing section in params.yaml; it says which keys `make tune` searches, how "
                          "many trials and with which seeds (see params.yaml in kd's repository)")
    tune = params.tune
    section, integers = check_search(raw, args.model, tune)
    stage = params.model(args.model).stage
    trials = [{}] + draw(tune, integers)
    digest = json.dumps({"params": raw, "model": args.model, "tune": dataclasses.asdict(tune)}, sort_keys=True,
                        default=str)
    prefix = f"tune-{args.model}-{hashlib.sha1(digest.encode()).hexdigest()[:6]}"
    name = args.model + ("" if args.config == "default" else f"-{args.config}")

    def stop(signum, frame):  # SIGTERM as Ctrl-C: the finished trials stay, the report says how to resume
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)

    done = finished(prefix)
    results, times = [], []
    print(f"tune {args.model} ({section}.{args.model}, stage {stage}): {len(trials) - 1} trials of "
          f"{', '.join(item.key for item in tune.space)} ({tune.sampler}, seed {tune.seed}) beside the current "
          f"settings; experiments {prefix}-NN" + (f" ({len(done)} already ran)" if done else ""), flush=True)
    try:
        for number, settings in enumerate(trials):
            experiment = f"{prefix}-{number:02d}"
            began = time.perf_counter()
            if experiment not in done:
                succeeded = run_experiment(experiment, stage, lines + overrides(raw, section, args.model, settings))
                if number:  # trial 0 is often restored from the cache: not what a trial costs
                    times.append(time.perf_counter() - began)
                if not succeeded:
                    if number == 0:
                        raise KdError(f"the current settings' run ({experiment}) failed; its log is above")
                    # A trial may diverge (a learning rate too high): a result of the search, not its end.
                    results.append({"trial": number, "experiment": experiment, "settings": settings,
                                    "validation_accuracy": None, "validation_errors": None, "failed": True})
                    print(f"trial {number} of {len(trials) - 1} ({settings_text(settings)}) failed; the search goes on",
                          flush=True)
                    continue
            accuracy, images = validation_score(args.model, experiment)
            results.append({"trial": number, "experiment": experiment, "settings": settings,
                            "validation_accuracy": accuracy, "validation_errors": round((1 - accuracy) * images)})
            best = best_trial(results)
            left = len(trials) - number - 1
            eta = f", about {left * sum(times) / len(times) / 60:.0f} min left" if times and left else ""
            print(f"trial {number} of {len(trials) - 1} ({settings_text(settings)}): validation accuracy "
                  f"{100 * accuracy:.2f} %; best so far {100 * best['validation_accuracy']:.2f} % "
                  f"(trial {best['trial']}: {settings_text(best['settings'])}){eta}", flush=True)

        best = best_trial(results)
        if args.config == "default":  # the lines of params.yaml to edit
            apply = [f"{section}.{args.model}.{top}: {json.dumps(value)}" for top, value in
                     entry_with(raw, section, args.model, best["settings"]).items()
                     if top in {key.split(".")[0] for key in best["settings"]}]
        else:  # the lines to add to the configuration's file
            apply = overrides(raw, section, args.model, best["settings"])
        report = {"model": args.model, "section": section, "config": args.config, "prefix": prefix,
                  "sampler": tune.sampler, "search_seed": tune.seed, "space": [dataclasses.asdict(s) for s in tune.space],
                  "validation_images": images, "trials": results, "best": best, "apply": apply, "verdict": None,
                  "current": {item.key: current_value(raw, section, args.model, item.key) for item in tune.space}}
        if not args.search_only and best["trial"] != 0:
            report["verdict"] = run_verdict(args.model, stage, lines, raw, section, prefix, best, tune.seeds, done)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished trials are kept as experiments ({prefix}-NN, `dvc exp show`); run "
              f"the same command again to resume from them", file=sys.stderr)
        raise SystemExit(130) from None

    report.update({key: value for key, value in record({}, started).items() if key != "figures"})
    out = Path(args.out)
    write_json(out / f"{name}.json", report)
    with atomic_path(out / f"{name}.md") as temporary:
        temporary.write_text(markdown(report))
    write_json(Path(args.plots) / f"{name}.json",
               [{"trial": t["trial"], "validation_accuracy": t["validation_accuracy"], **t["settings"]}
                for t in results if not t.get("failed")])
    print((out / f"{name}.md").read_text())
    if args.apply and best["trial"] != 0:
        dvc("exp", "apply", best["experiment"])
        print(f"applied {best['experiment']}: params.yaml and the model's outputs are the best trial's")


def run_verdict(model, stage, lines, raw, section, prefix, best, seeds, done):
    """The best and the current settings, each trained with every seed of ``seeds``; their test metrics."""
    scores = {"current": {}, "best": {}}
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            for which, settings in (("current", {}), ("best", best["settings"])):
                experiment = f"{prefix}-{which}-s{seed}"
                if experiment not in done:
                    run_experiment(experiment, stage,
                                   lines + overrides(raw, section, model, {**settings, "seed": seed}))
                scores[which][seed] = test_score(model, experiment, folder)
                print(f"verdict: {which} settings, seed {seed}: {scores[which][seed]['errors']} test errors",
                      flush=True)
    return verdict(scores["current"], scores["best"])


if __name__ == "__main__":
    run_stage(main)
