"""Put every model side by side: what it keeps (accuracy) and what it costs.

Ratios are taken against the *reference teacher*: the first model of ``train:`` that
teaches another model (``teacher`` in the default params). A distilled model is also
compared with every other model of the same architecture (for ``student``: the
``student_scratch`` and ``student_direct`` controls), as ``gain_vs_<model>``: its
accuracy minus theirs; so is a peer of a mutual group (its teacher column names its peers).
"""

from pathlib import Path

PER_MODEL_KEYS = ("accuracy", "errors", "params", "flops", "size_bytes")
# What metrics/<model>.json holds, so `dvc metrics show` fits a terminal; the rest is in reports/.
HEADLINE = ("accuracy", "errors", "loss", "agreement", "params", "flops", "size_bytes", "precision",
            "chosen_by", "backend")


def reference_teacher(params):
    """The model the ratios are taken against, or None when nothing is distilled."""
    teachers = {spec.teacher for spec in params.models.values() if spec.teacher}
    roots = [name for name, spec in params.models.items() if spec.teacher is None and name in teachers]
    return roots[0] if roots else None


EXPORT_KINDS = ("float32", "int8")  # the TFLite files of exported/<model>/
EXPORT_HEADLINE = ("accuracy", "errors", "loss", "agreement", "size_bytes", "vs_keras")


def exported_row(name, kind, measured, model_metrics):
    """One exported file's row: its measurements, its model's FLOPs, and what it costs in accuracy."""
    return {
        **{key: measured[key] for key in ("accuracy", "errors", "loss", "agreement", "size_bytes", "latency_ms_batch1")},
        "model": name,
        "format": kind,
        "flops": model_metrics["flops"],
        "vs_keras": measured["accuracy"] - model_metrics["accuracy"],
        "size_vs_model": measured["size_bytes"] / model_metrics["size_bytes"],
    }


def compare(params, metrics, latencies=None):
    """Build the comparison: ``{model: {...}}`` from per-model metrics (and latencies, if measured)."""
    reference = reference_teacher(params)
    base = metrics.get(reference)
    comparison = {}
    for name, spec in params.models.items():
        row = {key: metrics[name][key] for key in PER_MODEL_KEYS}
        taught_by = spec.teacher or ("with " + ", ".join(p for p in spec.mutual.peers if p != name) if spec.mutual else "")
        row.update(teacher=taught_by, architecture=spec.architecture, **(latencies or {}).get(name, {}))
        if base is not None:
            row["accuracy_drop_vs_teacher"] = base["accuracy"] - row["accuracy"]
            row["params_compression"] = base["params"] / row["params"]
            if base["flops"] and row["flops"]:
                row["flops_compression"] = base["flops"] / row["flops"]
        if spec.teacher is not None or spec.mutual is not None:  # what its teachers (or peers) bought
            for other, other_spec in params.models.items():
                if other != name and other_spec.architecture == spec.architecture:
                    row[f"gain_vs_{other}"] = row["accuracy"] - metrics[other]["accuracy"]
        comparison[name] = row
    return comparison


def markdown(comparison, measured_on, exported=None):
    """The comparison as Markdown tables (models, then exported files), with the machine the
    latencies were taken on."""
    header = (
        "| model | teacher | test accuracy | errors | params | FLOPs (MACs) | latency, batch 1 | "
        "throughput | size | accuracy vs teacher | FLOPs ÷ | params ÷ |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, row in comparison.items():
        flops = f"{row['flops']:,}" if row["flops"] is not None else "n/a"
        lines.append(
            f"| {name} | {row['teacher'] or '—'} | {100 * row['accuracy']:.2f} % | {row['errors']} | "
            f"{row['params']:,} | {flops} | {row['latency_ms_batch1']:.3f} ms | "
            f"{row['throughput_per_s']:,.0f}/s | {row['size_bytes'] / 1e6:.2f} MB | "
            f"{_points(row.get('accuracy_drop_vs_teacher'), negate=True)} | "
            f"{_times(row.get('flops_compression'))} | {_times(row.get('params_compression'))} |"
        )
    gains = [
        f"- `{name}` vs `{key[len('gain_vs_'):]}`: {_points(value)}"
        for name, row in comparison.items()
        for key, value in row.items()
        if key.startswith("gain_vs_")
    ]
    text = "\n".join(lines) + "\n"
    if exported:
        text += (
            "\nExported (TFLite through LiteRT; agreement: same top-1 class as its .keras model):\n\n"
            "| file | test accuracy | errors | vs .keras | agreement | size | size ÷ .keras | latency, batch 1 |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
        for label, row in exported.items():
            text += (
                f"| {label} | {100 * row['accuracy']:.2f} % | {row['errors']} | {_points(row['vs_keras'])} | "
                f"{100 * row['agreement']:.2f} % | {row['size_bytes'] / 1e6:.2f} MB | {row['size_vs_model']:.2f} | "
                f"{row['latency_ms_batch1']:.3f} ms |\n"
            )
    if gains:
        text += "\nTest-accuracy gain of each distilled model over the models of its architecture:\n\n"
        text += "\n".join(gains) + "\n"
    text += (
        f"\nLatency: median of {measured_on['latency_repeats']} batch-1 calls after "
        f"{measured_on['latency_warmup']} warm-up calls; throughput: median of "
        f"{measured_on['throughput_repeats']} calls at batch {measured_on['throughput_batch_size']}. "
        f"Measured on {measured_on['cpu']}, {measured_on['cores']} cores, TensorFlow {measured_on['tensorflow']}.\n"
    )
    return text


def plot_accuracy_vs_flops(comparison, path, exported=None):
    """Test accuracy against FLOPs (log scale), as PNG: a labelled point per model, and its exported
    files as hollow markers by format in the model's colour, unlabelled (they sit at its FLOPs,
    where labels would overlap)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    figure, axes = plt.subplots(figsize=(7, 4.5))
    colours = {}
    for name, row in comparison.items():
        if row["flops"] is None:
            continue
        colours[name] = axes.scatter(row["flops"], 100 * row["accuracy"], s=40).get_facecolor()[0]
        axes.annotate(name, (row["flops"], 100 * row["accuracy"]), textcoords="offset points", xytext=(6, 4))
    markers = {"float32": "^", "int8": "s"}
    formats = []
    for row in (exported or {}).values():
        if row["flops"] is None:
            continue
        axes.scatter(row["flops"], 100 * row["accuracy"], s=90, marker=markers.get(row["format"], "D"),
                     facecolors="none", edgecolors=[colours.get(row["model"], "black")])
        formats += [row["format"]] if row["format"] not in formats else []
    if formats:
        axes.legend(handles=[Line2D([], [], linestyle="none", marker=markers.get(kind, "D"), markerfacecolor="none",
                                    markeredgecolor="black", label=f"{kind} .tflite") for kind in formats],
                    loc="lower right", title="exported files")
    axes.set_xscale("log")
    from matplotlib.ticker import EngFormatter, LogLocator

    axes.xaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    axes.xaxis.set_major_formatter(EngFormatter())
    axes.xaxis.set_minor_formatter(EngFormatter())
    axes.set_xlabel("FLOPs per image (multiply-accumulates, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("What each model keeps for what it costs")
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def plot_curves(curves, path, ylabel):
    """One line per model: ``curves`` maps model name to ``(epochs, values)``; PNG."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, (epochs, values) in curves.items():
        axes.plot(epochs, values, marker="o", markersize=3, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    _save(figure, path)


STANDARD_CURVES = ("eval/accuracy", "eval/loss", "train/accuracy", "train/loss", "train/hard_loss", "train/soft_loss")


def write_plots(comparison, curves_root, folder, exported=None):
    """Write ``folder``'s plots: data that ``dvc plots show`` renders, and PNGs for the README.

    - ``accuracy_vs_flops.json`` / ``.png``: test accuracy against FLOPs, one point per model and
      per exported file (at its model's FLOPs);
    - ``curves/<split>_<metric>.json``: the per-epoch metrics of :data:`STANDARD_CURVES`, long
      format (``model``, ``epoch``, ``value``), drawn one line per model; ``curves/terms/``: any
      other metric a model logged (found in ``curves_root/<model>/``, so a new loss term's
      parts appear without a list to keep);
    - ``validation_accuracy.png``, ``validation_loss.png``: the same for the README.
    """
    from kd.artifacts import write_json

    folder = Path(folder)
    points = {**comparison, **(exported or {})}  # an exported file sits at its model's FLOPs
    write_json(folder / "accuracy_vs_flops.json",
               [{"model": name, "flops": row["flops"], "accuracy": row["accuracy"]} for name, row in points.items()])
    plot_accuracy_vs_flops(comparison, folder / "accuracy_vs_flops.png", exported)
    # Every trained model has validation curves (read_curves names a missing one); a pretrained one has none.
    logged = {name: logged_metrics(Path(curves_root) / name)
              | ({"eval/accuracy", "eval/loss"} if not row["architecture"].startswith("file ") else set())
              for name, row in comparison.items()}
    for metric in sorted(set().union(STANDARD_CURVES, *logged.values())):
        curves = {name: read_curves(Path(curves_root) / name, metric) for name in comparison if metric in logged[name]}
        split, quantity = metric.split("/")
        label = f"{'validation' if split == 'eval' else 'train'}_{quantity}"
        # dvc.yaml titles the standard curves; a term's part names its own value field, which
        # `dvc plots show` takes as the axis title.
        field, path = ("value", folder / "curves" / f"{label}.json") if metric in STANDARD_CURVES \
            else (label, folder / "curves" / "terms" / f"{label}.json")
        rows = [{"model": name, "epoch": int(epoch), field: float(value)}
                for name, (epochs, values) in curves.items() for epoch, value in zip(epochs, values, strict=True)]
        write_json(path, rows)
        if split == "eval":
            plot_curves(curves, folder / f"{label}.png", label.replace("_", " "))


def logged_metrics(curves_dir):
    """The metrics a DVCLive folder holds per epoch, as ``split/name`` (``eval/accuracy``, ...)."""
    root = Path(curves_dir) / "plots" / "metrics"
    return {str(path.relative_to(root).with_suffix("")) for path in root.glob("*/*.tsv")}


def training_setup(curves_dir):
    """``{"precision", "chosen_by"[, "backend"]}`` a model trained with, as its stage recorded them
    (``backend`` where it was not TensorFlow, kd's default, which the setups recorded before omit)."""
    import json

    path = Path(curves_dir) / "training.json"
    if not path.is_file():  # curves written before the stage recorded its setup
        return {}
    setup = json.loads(path.read_text())
    return {key: setup[key] for key in ("precision", "chosen_by", "backend") if key in setup}


def read_curves(curves_dir, metric):
    """``(epochs, values)`` of one metric (e.g. ``eval/accuracy``) from a DVCLive folder."""
    import numpy as np

    from kd.errors import ArtifactError

    path = Path(curves_dir) / "plots" / "metrics" / f"{metric}.tsv"
    try:
        table = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
    except (OSError, ValueError) as error:
        raise ArtifactError(f"training curve {path} is missing or unreadable: {error}") from None
    return table[:, 0] + 1, table[:, 1]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    from kd.artifacts import atomic_path

    with atomic_path(Path(path)) as temporary:
        # Fixed metadata so that the same numbers give the same bytes.
        figure.savefig(temporary, dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(figure)


def _points(value, negate=False):
    if value is None:
        return "—"
    value = (-value if negate else value) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{100 * value:+.2f} pt"


def _times(value):
    return "—" if value is None else f"{value:.1f}×"
