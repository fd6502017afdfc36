"""`make tune`: a distilled model's settings chosen by measurement on the validation split.

The search draws ``tune.trials`` settings from ``tune.space`` (params.yaml): ``random`` draws each
key uniformly (log-uniformly with ``log: true``) with a generator seeded by ``tune.seed``, so the
same section draws the same trials; ``grid`` takes every combination of the keys' ``values`` in
order. Each trial is the model's entry with those keys set, as ``dvc exp run -S`` overrides
(:func:`overrides`); a key the entry inherits from ``training:`` (its optimizer, say) is written
whole into the entry, with the searched part replaced. Trial 0 is the current settings.

Every range is checked before any trial runs, by parsing params.yaml with each end of it applied
(:func:`check_search`): a temperature of 0 or a weight of 1.5 is refused under ``tune.space``'s
key, as the pipeline would refuse it under the model's. The search never reads the test split:
a trial runs the model's stage alone, and is scored on its validation accuracy; only the verdict
(the best and the current settings, trained with each of ``tune.seeds``) is tested.

``tools/tune.py`` runs the trials as DVC experiments and writes the report (:func:`markdown`).
"""

import copy
import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import yaml

from kd.errors import ParamsError
from kd.params import load_params
from kd.params.model_sections import DISTILL_OPTIONAL, MODEL_OPTIONAL, TRAINING_KEYS, TRAINING_OPTIONAL
from kd.seeds import spread, within_noise

TUNED_SECTIONS = ("distill", "distill_views")
# Keys a search may not set: they change which teachers or views the model learns from (the DAG), what
# the model is, or (seed) what the verdict varies.
FIXED = ("teacher", "teachers", "views", "architecture", "seed")
SEARCHABLE = tuple(k for k in TRAINING_KEYS + TRAINING_OPTIONAL + MODEL_OPTIONAL + DISTILL_OPTIONAL if k not in FIXED)


def model_section(raw, name):
    """The section (``distill`` or ``distill_views``) of distilled model ``name`` in a params mapping."""
    for section in TUNED_SECTIONS:
        if name in (raw.get(section) or {}):
            return section
    for section in ("train", "pretrained", "peers"):
        if name in (raw.get(section) or {}):
            distilled = [n for s in TUNED_SECTIONS for n in (raw.get(s) or {})]
            raise ParamsError(f"model {name!r} is in {section}: and learns from no teacher; nothing to tune "
                              f"(distilled models: {', '.join(distilled) or 'none'})")
    models = [n for s in ("train", "pretrained", "peers") + TUNED_SECTIONS for n in (raw.get(s) or {})]
    raise ParamsError(f"no model named {name!r} in params.yaml; models are: {', '.join(models)}")


def draw(tune, integers=()):
    """The settings of trials 1..n, ``[{key: value}]``, drawn from ``tune.space`` as ``tune.sampler`` says;
    the keys in ``integers`` (those whose current value is an integer: epochs) drawn as integers."""
    if tune.sampler == "grid":
        for item in tune.space:
            if not item.values:
                raise ParamsError(f"tune.space.{item.key}: the grid sampler needs `values: [...]`, found a range")
        combinations = itertools.product(*(item.values for item in tune.space))
        return [dict(zip((item.key for item in tune.space), values))
                for values in itertools.islice(combinations, tune.trials)]
    rng = np.random.default_rng(tune.seed)
    return [{item.key: _draw_one(item, rng, item.key in integers) for item in tune.space} for _ in range(tune.trials)]


def _draw_one(item, rng, integer):
    if item.values:
        return item.values[int(rng.integers(len(item.values)))]
    if item.log:
        value = math.exp(rng.uniform(math.log(item.low), math.log(item.high)))
    else:
        value = rng.uniform(item.low, item.high)
    if integer:
        return int(round(value))
    return float(f"{value:.3g}")  # three significant digits: a setting a person would write


def entry_with(raw, section, name, settings):
    """A copy of model ``name``'s entry with ``settings`` (``{dotted key: value}``) applied; a nested key the
    entry does not hold starts from the ``training:`` default of its first part."""
    entry = copy.deepcopy(raw[section][name])
    for key, value in settings.items():
        top, *rest = key.split(".")
        if not rest:
            entry[top] = value
            continue
        if top not in entry:
            entry[top] = copy.deepcopy((raw.get("training") or {}).get(top) or {})
        node = entry[top]
        for part in rest[:-1]:
            if not isinstance(node, dict):
                raise ParamsError(f"tune.space.{key}: {section}.{name}.{top} holds no mapping at {part!r}")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"tune.space.{key}: {section}.{name}.{top} holds no mapping there")
        node[rest[-1]] = value
    return entry


def overrides(raw, section, name, settings):
    """``dvc exp run -S`` overrides that give model ``name`` the ``settings``: one per top-level key."""
    entry = entry_with(raw, section, name, settings)
    tops = dict.fromkeys(key.split(".")[0] for key in settings)
    return [f"++{section}.{name}.{top}={hydra_value(entry[top])}" for top in tops]


def hydra_value(value):
    """``value`` in Hydra's override grammar (what ``dvc exp run -S`` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value.replace("_", "").replace("-", "").isalnum() else "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise ParamsError(f"cannot write {value!r} as a params override")


def check_search(raw, name, tune):
    """Refuse, before any trial, a key the model does not have or cannot change here and a range end the
    pipeline would refuse; return the model's section and the keys drawn as integers."""
    section, integers = model_section(raw, name), set()
    for item in tune.space:
        top = item.key.split(".")[0]
        if top in FIXED:
            raise ParamsError(f"tune.space.{item.key}: {top} is not searched (it changes what model {name!r} "
                              "is or learns from, or, seed, what the verdict varies); searchable: "
                              + ", ".join(SEARCHABLE))
        if top not in SEARCHABLE:
            raise ParamsError(f"tune.space.{item.key}: {top!r} is not a params key of a distilled model "
                              f"({section}.{name}); searchable: {', '.join(SEARCHABLE)}")
        if type(current_value(raw, section, name, item.key)) is int and not item.values:  # epochs, not a flag
            integers.add(item.key)
        ends = item.values or ((int(round(item.low)), int(round(item.high))) if item.key in integers
                               else (item.low, item.high))
        for end in ends:
            trial = copy.deepcopy(raw)
            trial[section][name] = entry_with(raw, section, name, {item.key: end})
            try:
                validate(trial)
            except ParamsError as error:
                raise ParamsError(f"tune.space.{item.key}: {end!r} is refused by the pipeline: {error}") from None
    return section, frozenset(integers)


def current_value(raw, section, name, key):
    """The value of ``key`` (dotted) that model ``name`` trains with: its entry's, else ``training:``'s."""
    top, *rest = key.split(".")
    entry = raw[section][name]
    node = entry[top] if top in entry else (raw.get("training") or {}).get(top)
    for part in rest:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def validate(raw):
    """:func:`kd.params.load_params` of a params mapping, through a file as a stage would read it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_params(path)


def best_trial(trials):
    """The trial of highest validation accuracy; on a tie, the earliest (the current settings first)."""
    scored = [trial for trial in trials if not trial.get("failed")]
    return max(scored, key=lambda trial: (trial["validation_accuracy"], -trial["trial"]))


def verdict(current, best):
    """``{"current", "best", "gain"}``: test errors per seed and the paired gain in test accuracy (points),
    called as kd's seeds reports call a gain (:func:`kd.seeds.within_noise`)."""
    seeds = sorted(current)
    gain = spread([100 * (best[seed]["accuracy"] - current[seed]["accuracy"]) for seed in seeds])
    return {
        "seeds": seeds,
        "current": spread([current[seed]["errors"] for seed in seeds]),
        "best": spread([best[seed]["errors"] for seed in seeds]),
        "gain_pt": gain,
        "call": "within seed noise" if within_noise(gain) else "gain" if gain["mean"] > 0 else "loss",
    }


def settings_text(settings):
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in settings.items()) or "the current settings"


def markdown(report):
    """The report as Markdown: the search, the trials, the verdict and the edit that applies it."""
    model, section = report["model"], report["section"]
    best = report["best"]
    lines = [
        f"# Tuning `{model}` ({section}.{model}){' in configuration `' + report['config'] + '`' if report['config'] != 'default' else ''}",
        "",
        f"{len(report['trials']) - 1} trials ({report['sampler']} sampler, search seed {report['search_seed']}) "
        f"beside the current settings, each a DVC experiment (`dvc exp show` lists them as "
        f"`{report['prefix']}-NN`), scored on the validation split "
        f"({report['validation_images']:,} images); the test split was read only for the verdict.",
        "",
        "| trial | settings | validation accuracy | validation errors |",
        "|---|---|---|---|",
    ]
    for trial in sorted(report["trials"], key=lambda t: -(t["validation_accuracy"] or 0)):
        mark = " **best**" if trial["trial"] == best["trial"] else ""
        label = "current" if trial["trial"] == 0 else str(trial["trial"])
        if trial.get("failed"):
            lines.append(f"| {label} | {settings_text(trial['settings'])} | failed (diverged?) | — |")
            continue
        lines.append(f"| {label}{mark} | {settings_text(trial['settings'])} | "
                     f"{100 * trial['validation_accuracy']:.2f} % | {trial['validation_errors']} |")
    lines.append("")
    result = report.get("verdict")
    if best["trial"] == 0:
        lines.append("**The current settings were already the best on the validation split**; nothing to apply.")
    elif result is None:
        lines.append("No verdict yet (`--search-only`): the best settings were not tested.")
    else:
        seeds = ", ".join(map(str, result["seeds"]))
        gain = result["gain_pt"]
        lines += [
            f"**Verdict on the test split** (the model trained with seeds {seeds} under each settings; "
            "its teacher is the pipeline's, the same for every run):",
            "",
            "| settings | test errors (mean ± std) | per seed |",
            "|---|---|---|",
            f"| current ({settings_text(report['current'])}) | {result['current']['mean']:.1f} ± "
            f"{result['current']['std']:.1f} | {' / '.join(str(round(v)) for v in result['current']['values'])} |",
            f"| best ({settings_text(best['settings'])}) | {result['best']['mean']:.1f} ± {result['best']['std']:.1f} | "
            f"{' / '.join(str(round(v)) for v in result['best']['values'])} |",
            "",
            f"Gain in test accuracy, same seed: **{gain['mean']:+.2f} ± {gain['std']:.2f} pt** "
            f"({' / '.join(f'{v:+.2f}' for v in gain['values'])}): {result['call']}.",
        ]
    if best["trial"] != 0:
        where = ("in params.yaml" if report["config"] == "default"
                 else f"added to configs/{report['config']}.txt (after its own lines)")
        lines += ["", "To apply the best settings: " + "; ".join(f"`{line}`" for line in report["apply"])
                  + f" {where}, or `dvc exp apply {best['experiment']}` (its params and outputs)."]
    lines += ["", f"Commit {report['commit']}, `{report['command']}`, {report['machine']['cpu']} "
                  f"({report['machine']['cores']} cores), {report['wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
