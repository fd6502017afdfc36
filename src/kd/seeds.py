"""One configuration over several seeds: mean ± standard deviation, and which gains are real.

A single run's accuracy moves by a few tenths of a point with the seed (initial weights,
dropout, shuffling, augmentation, the validation split), which is as large as many of
the gains distillation is credited with. So the gains are taken *per seed* (a distilled
model against each model of its architecture from the same run, e.g. ``student`` against
``student_scratch``) and summarised over seeds; a gain whose mean is not larger than its
standard deviation is reported as within seed noise, not as a gain.

Input: each run's comparison (``{model: {"accuracy", "errors", "gain_vs_<other>", ...}}``,
as :func:`kd.comparison.compare` builds it from the run's params and ``metrics/<model>.json``)
keyed by seed, as ``tools/seeds.py`` collects them from ``dvc exp show``; and each run's exported
files (``{"student · int8": metrics/exported/student.int8.json's data}``), whose accuracy
against their own .keras model (``vs_keras``) is summarised the same way.
"""

import statistics


def summarise(runs, exported=None):
    """``runs``: ``{seed: comparison}``; ``exported``: ``{seed: {file: metrics}}`` or None.
    Return ``{"seeds", "models", "gains", "exported"}`` with mean/std per entry."""
    if not runs:
        raise ValueError("no runs to summarise")
    seeds = sorted(runs)
    models = [name for name in runs[seeds[0]] if name != "measured_on"]
    summary = {"seeds": seeds, "models": {}, "gains": {}}
    for name in models:
        rows = [runs[seed][name] for seed in seeds if name in runs[seed]]
        if len(rows) != len(seeds):
            raise ValueError(f"model {name!r} is missing from some runs; were they run with the same models?")
        summary["models"][name] = {
            "teacher": rows[0]["teacher"],
            "accuracy": spread([row["accuracy"] for row in rows]),
            "errors": spread([row["errors"] for row in rows]),
        }
        for key in rows[0]:
            if key.startswith("gain_vs_"):
                summary["gains"][f"{name} vs {key[len('gain_vs_'):]}"] = spread([row[key] for row in rows])
    summary["exported"] = {}
    for name in sorted((exported or {}).get(seeds[0], {})):
        rows = [exported[seed].get(name) for seed in seeds]
        if None in rows:
            raise ValueError(f"exported file {name!r} is missing from some runs; were they run with the same exports?")
        summary["exported"][name] = {key: spread([row[key] for row in rows])
                                     for key in ("accuracy", "errors", "vs_keras", "size_bytes")}
    return summary


def within_noise(spread):
    """True when a gain's mean is no larger than its standard deviation over seeds."""
    return abs(spread["mean"]) <= spread["std"]


def markdown(summary, title, versus=None):
    """The summary as two Markdown tables: models, most accurate first; then the paired gains
    with a verdict, each pair of models once, or, with ``versus``, each model against that one."""
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [
        f"**{title}**, seeds {seeds} (mean ± standard deviation over seeds):",
        "",
        "| model | teacher | test accuracy | test errors | errors per seed |",
        "|---|---|---|---|---|",
    ]
    ranked = sorted(summary["models"].items(), key=lambda item: -item[1]["accuracy"]["mean"])
    for name, row in ranked:
        accuracy, errors = row["accuracy"], row["errors"]
        lines.append(
            f"| {name} | {row['teacher'] or '—'} | {100 * accuracy['mean']:.2f} ± {100 * accuracy['std']:.2f} % | "
            f"{errors['mean']:.1f} ± {errors['std']:.1f} | {' / '.join(str(round(v)) for v in errors['values'])} |"
        )
    if summary["gains"]:
        lines += ["", "| gain (same seed, test accuracy) | mean ± std | per seed | verdict |", "|---|---|---|---|"]
        for name, gain in summary["gains"].items():
            first, second = name.split(" vs ")
            if versus is not None and second != versus:
                continue
            if versus is None and f"{second} vs {first}" in summary["gains"] and second < first:
                continue  # the same pair seen from the other side: listed once
            per_seed = " / ".join(f"{100 * v:+.2f}" for v in gain["values"])
            verdict = "within seed noise" if within_noise(gain) else ("gain" if gain["mean"] > 0 else "loss")
            lines.append(f"| {name} | {100 * gain['mean']:+.2f} ± {100 * gain['std']:.2f} pt | {per_seed} | {verdict} |")
    if summary.get("exported"):
        lines += ["", "| exported file | test accuracy | vs its .keras model | per seed | size |", "|---|---|---|---|---|"]
        for name, row in summary["exported"].items():
            delta = row["vs_keras"]
            per_seed = " / ".join(f"{100 * v:+.2f}" for v in delta["values"])
            lines.append(f"| {name} | {100 * row['accuracy']['mean']:.2f} ± {100 * row['accuracy']['std']:.2f} % | "
                         f"{100 * delta['mean']:+.2f} ± {100 * delta['std']:.2f} pt | {per_seed} | "
                         f"{row['size_bytes']['mean'] / 1e6:.2f} MB |")
    if summary.get("commit"):  # reports written before tools/seeds.py recorded its run have none
        machine, seconds = summary["machine"], summary["pipeline_seconds"]
        lines += ["", f"Run by `{summary['command']}` at commit {summary['commit'][:7]} on {machine['cpu']} "
                      f"({machine['cores']} cores); stages' seconds per seed, as its outputs record them (a stage DVC "
                      f"restored from its run-cache carries the seconds of the run that computed it): "
                      + ", ".join(f"{seconds.get(seed, seconds.get(str(seed))):,.0f} s"  # str keys once read from JSON
                                  for seed in summary["seeds"]) + "."]
    return "\n".join(lines) + "\n"


def versus_configuration(summary, baseline, name, baseline_name):
    """Two configurations' reports, seed by seed: each model's test errors in ``baseline`` and in
    ``summary`` over each report's seeds, and their paired difference on the seeds both ran,
    called by :func:`within_noise` (Markdown).

    A seed fixes the same initial weights, shuffling and split in both configurations, so the
    difference per seed separates what the configuration changed from what the seed moved; one
    shared seed has no spread to judge it by, and gets no verdict."""
    seeds = [seed for seed in summary["seeds"] if seed in baseline["seeds"]]
    models = sorted((model for model in baseline["models"] if model in summary["models"]),
                    key=lambda model: baseline["models"][model]["errors"]["mean"])  # most accurate first
    if not seeds or not models:
        raise ValueError(f"reports {name!r} and {baseline_name!r} share no seed and model to compare")
    same_seeds = summary["seeds"] == baseline["seeds"]
    ours_title = name if same_seeds else f"{name} ({_seeds(summary['seeds'])})"
    lines = [f"| model | {baseline_name}, test errors ({_seeds(baseline['seeds'])}) | {ours_title} | {name} − "
             f"{baseline_name}, {'per seed' if same_seeds else _seeds(seeds)} | mean ± std | verdict |",
             "|---|---|---|---|---|---|"]
    for model in models:
        ours, theirs = (dict(zip(report["seeds"], report["models"][model]["errors"]["values"]))
                        for report in (summary, baseline))
        difference = spread([ours[seed] - theirs[seed] for seed in seeds])
        verdict = ("the same errors" if not any(difference["values"])
                   else "one seed: no verdict" if len(seeds) == 1
                   else "within seed noise" if within_noise(difference)
                   else "fewer errors" if difference["mean"] < 0 else "more errors")
        lines.append(f"| {model} | {_errors(theirs)} | {_errors(ours)} | "
                     f"{' / '.join(f'{v:+.0f}' for v in difference['values'])} | "
                     + ("— |" if len(seeds) == 1 else f"{difference['mean']:+.1f} ± {difference['std']:.1f} |")
                     + f" {verdict} |")
    runs = []
    for title, report in ((baseline_name, baseline), (name, summary)):
        seconds = report["pipeline_seconds"]
        run = (f"at commit {report['commit'][:7]} on {report['machine']['cpu']} ({report['machine']['cores']} cores)"
               if report.get("commit") else "by a run that recorded neither commit nor machine")
        runs.append(f"`{title}` {run}, stages' seconds per seed "
                    + " / ".join(f"{seconds.get(seed, seconds.get(str(seed))):,.0f}" for seed in report["seeds"]))
    return "\n".join(lines) + "\n\nFrom `reports/seeds/" + f"{baseline_name}.json` and `reports/seeds/{name}.json`: " \
        + "; ".join(runs) + ". Seconds from two runs compare machines' speed levels as much as the configurations.\n"


def _seeds(seeds):
    return ("seed " if len(seeds) == 1 else "seeds ") + " / ".join(map(str, seeds))


def _errors(by_seed):
    """One model's test errors over seeds: mean ± std (each seed's), or the one seed's."""
    errors = spread(list(by_seed.values()))
    values = " / ".join(f"{v:.0f}" for v in errors["values"])
    return values if len(by_seed) == 1 else f"{errors['mean']:.1f} ± {errors['std']:.1f} ({values})"


def spread(values):
    """``{"mean", "std", "values"}`` of a list of numbers (std 0 for one)."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }
