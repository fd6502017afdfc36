"""Run one configuration of the pipeline over several seeds and report mean ± std.

Each seed is a DVC experiment, ``<config>-seed<N>``: ``params.yaml`` plus the overrides
of ``configs/<config>.txt`` plus ``seed=N``, queued with ``dvc exp run --queue`` and run
one after another (``dvc exp run --run-all -j 1``; ``--jobs N`` runs N at once) in DVC's
temporary workspaces, so the
workspace and its params.yaml are left as they were. Seeds that already ran on the
current commit are not run again, so an interrupted run resumes. The report is written
to ``reports/seeds/<config>.md`` and ``.json`` (see :mod:`kd.seeds`).

With ``--model-seeds A B ...`` the seed is each named model's own ``seed`` key instead of the
file's: the data split, the teacher and everything else keep the file's seed, so DVC's
run-cache trains them once and restores them for the other seeds, and the spread is the named
models' own (initial weights, dropout, shuffling) under one teacher. Experiments are then named
``<config>-model-seed<N>``, the report ``<config>.md``.

    python tools/seeds.py default --seeds 0 1 2
    python tools/seeds.py best --seeds 0 1 2 --report-only
    python tools/seeds.py patience --seeds 0 1 2 --model-seeds student_e60 student_e120
"""

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from kd.artifacts import atomic_path, write_json  # noqa: E402
from kd.comparison import compare  # noqa: E402
from kd.errors import KdError, run_stage  # noqa: E402
from kd.params import parse_params  # noqa: E402
from kd.stage_kinds import MODEL_SECTIONS  # noqa: E402
from kd.records import record  # noqa: E402
from kd.seeds import markdown, summarise  # noqa: E402

from dvc_env import dvc_environment  # noqa: E402  (tools/, beside this script)


def overrides(config):
    """The ``key=value`` lines of ``configs/<config>.txt`` (none for ``default``)."""
    if config == "default":
        return []
    path = Path("configs") / f"{config}.txt"
    if not path.is_file():
        known = ", ".join(["default"] + sorted(p.stem for p in Path("configs").glob("*.txt")))
        raise KdError(f"no configuration {config!r}: {path} does not exist (known: {known})")
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def dvc(*args, capture=False):
    """Run DVC with this Python's environment (the project's .venv) first on PATH: DVC's queue
    workers start `dvc`, and the stages `python`, from PATH."""
    environment = dvc_environment("seeds")
    result = subprocess.run(["dvc", *args], text=True, capture_output=capture, env=environment)
    if result.returncode != 0:
        raise KdError(f"`dvc {' '.join(args)}` failed" + (f": {result.stderr.strip()}" if capture else ""))
    return result.stdout


def experiments(names):
    """``(finished, queued)`` for the experiments named ``names`` on the current commit:
    ``{name: (params, comparison, exported, timings)}`` of those that ran, and the names waiting in the queue."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], text=True, capture_output=True, check=True).stdout.strip()
    found, queued = {}, set()
    for commit in json.loads(dvc("exp", "show", "--json", capture=True)):
        if commit["rev"] != head:
            continue
        for experiment in commit.get("experiments") or []:
            if experiment.get("name") not in names:
                continue
            revision = experiment["revs"][0]
            state = (experiment.get("executor") or {}).get("state", "success")
            if state in ("queued", "running"):
                queued.add(experiment["name"])
                continue
            if revision.get("error") or state != "success":
                # A failed run is listed with its baseline's metrics: never count it.
                print(f"{experiment['name']}: {state}, no results" + (" (see `dvc queue logs`)" if state == "failed" else ""))
                continue
            data = revision.get("data") or {}
            params = data["params"]["params.yaml"]["data"]
            files = {Path(path): entry["data"] for path, entry in (data.get("metrics") or {}).items() if "data" in entry}
            metrics = {path.stem: values for path, values in files.items() if path.parent.as_posix() == "metrics"}
            # metrics/exported/student.int8.json -> "student · int8"
            exported = {" · ".join(path.stem.rsplit(".", 1)): values for path, values in files.items()
                        if path.parent.as_posix() == "metrics/exported"}
            if metrics:
                # Gains against the models of the same architecture, as the evaluate stage reports them.
                comparison = compare(parse_params(params), metrics)
                found[experiment["name"]] = (params, comparison, exported, stage_seconds(revision["rev"], params))
    return found, queued - set(found)


def stage_seconds(revision, params):
    """``{stage: seconds}`` of the run's own stages, from timings/<stage>.json as the experiment
    left them (DVC outputs, read from the cache through the experiment's dvc.lock)."""
    import dvc.api

    spec = parse_params(params)
    stages = ["prepare"] + [model.stage for model in spec.models.values()]
    stages += [views.stage for views in (spec.views or {}).values()]  # the teachers' views, once for all students
    stages += [group.stage for group in (spec.mutual or {}).values()]  # peers trained together
    stages += [f"export@{name}" for name in spec.export.models] + ["evaluate"]
    seconds = {}
    for stage in stages:
        try:
            seconds[stage] = json.loads(dvc.api.read(f"timings/{stage}.json", rev=revision))["seconds"]
        except Exception:  # a stage restored from the run-cache before timings were outputs, ...
            continue
    return seconds


def seed_overrides(settings, models):
    """A function of the seed giving the overrides that set it: ``seed=N``, or with ``models``
    each one's own ``<section>.<model>.seed=N``, its section found in params.yaml with ``settings``."""
    if not models:
        return lambda seed: [f"seed={seed}"]
    raw = params_with(settings)
    sections = {}
    for model in models:
        found = [section for section in MODEL_SECTIONS if model in (raw.get(section) or {})]
        if not found:
            known = [name for section in MODEL_SECTIONS for name in (raw.get(section) or {})]
            raise KdError(f"--model-seeds: no model named {model!r} in params.yaml with these overrides; "
                          f"models are: {', '.join(known)}")
        sections[model] = found[0]
    return lambda seed: [f"++{section}.{model}.seed={seed}" for model, section in sections.items()]


def params_with(settings):
    """params.yaml as a mapping, with ``settings`` applied as `dvc exp run -S` would."""
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(Path("params.yaml").read_text())
        if settings:
            apply_overrides(path, settings)
        return yaml.safe_load(path.read_text())


def pipeline_seconds(timings):
    """The summed wall times of a run's stages."""
    return round(sum(timings.values()), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="default, or the name of a configs/<name>.txt overrides file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="report the seeds that already ran")
    parser.add_argument("--out", default="reports/seeds", help="folder for <config>.md and <config>.json")
    parser.add_argument("--versus", help="list each model's gain against this model only (e.g. student_direct)")
    parser.add_argument("--model-seeds", nargs="+", metavar="MODEL",
                        help="vary these models' own seed key instead of the file's seed")
    parser.add_argument("--jobs", type=int, default=1,
                        help="experiments run at once (DVC queue workers); at most the number of cores")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    settings = overrides(args.config)
    seeding = seed_overrides(settings, args.model_seeds)
    kind = "model-seed" if args.model_seeds else "seed"
    names = {f"{args.config}-{kind}{seed}": seed for seed in args.seeds}
    done, queued = experiments(names)
    if not args.report_only:
        for name, seed in names.items():
            if name in done:
                print(f"{name}: already ran on this commit; reusing its results")
            elif name in queued:
                print(f"{name}: already queued")
            else:
                dvc("exp", "run", "--queue", "-n", name, *(f"-S{s}" for s in settings + seeding(seed)))
        if len(done) < len(names):
            dvc("exp", "run", "--run-all", "-j", str(args.jobs))
        done, _ = experiments(names)

    missing = sorted(set(names) - set(done))
    if missing:
        raise KdError(f"no results for {', '.join(missing)}; run without --report-only (see `dvc exp show`)")
    runs = {names[name]: comparison for name, (_, comparison, _, _) in done.items()}
    exported = {names[name]: files for name, (_, _, files, _) in done.items()}
    summary = summarise(runs, exported)
    summary["overrides"] = settings
    if args.model_seeds:
        summary["model_seeds"] = args.model_seeds
    summary["pipeline_seconds"] = {names[name]: pipeline_seconds(timings) for name, (_, _, _, timings) in done.items()}
    summary["stage_seconds"] = {names[name]: timings for name, (_, _, _, timings) in done.items()}
    # What produced it: the commit, the command, the machine and the versions (kd.records).
    summary.update({key: value for key, value in record({}, started).items() if key != "figures"})
    title = f"Configuration `{args.config}`" + (f" (`configs/{args.config}.txt`)" if settings else " (params.yaml)")
    if args.model_seeds:
        title += (f", the seed being the own `seed` of {', '.join(args.model_seeds)} "
                  f"(every other model trained once, with the file's seed)")
    out = Path(args.out)
    write_json(out / f"{args.config}.json", summary)
    with atomic_path(out / f"{args.config}.md") as temporary:
        temporary.write_text(markdown(summary, title, versus=args.versus))
    print((out / f"{args.config}.md").read_text())


if __name__ == "__main__":
    run_stage(main)
