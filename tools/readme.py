"""Paste the reports written by runs into README.md and docs/*.md, between their markers.

``<!-- comparison:start -->`` … ``<!-- comparison:end -->`` gets reports/comparison.md (the
last `dvc repro`); ``<!-- seeds:<config>:start -->`` … ``<!-- seeds:<config>:end -->`` gets
reports/seeds/<config>.md (the last `make seeds CONFIG=<config>`), and ``<!-- seeds:<a>-vs-<b>:start -->``
the reports of configurations a and b compared seed by seed (:func:`kd.seeds.versus_configuration`);
``<!-- record:<name>:start -->`` gets the figures of the record reports/<name>.json rendered by
RECORDS[name] (a table and the line saying which command, commit and machine measured them);
``<!-- tune:start -->`` a row per `make tune` report of reports/tune/. A marker may sit in any of
those pages (the README holds the comparison, docs/ the seed reports), and each page is rewritten
only when a report changed what it holds, so pages without markers are never touched. A marker
whose report does not exist is left as it is; a report that no page has a marker for is named.
Run by `make readme`, from the repository root.

    python tools/readme.py            # in the repository root
    python tools/readme.py --root DIR
"""

import argparse
import json
import re
from pathlib import Path


def pages(root):
    """The Markdown pages that may hold markers: README.md, then docs/*.md."""
    return [path for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if path.is_file()]


def measured_by(record):
    """The line under a record's figures: the command, the commit, the machine and the date."""
    machine = record["machine"]
    commit = record["commit"] or "unknown"
    commit = commit[:7] + (" with uncommitted changes" if commit.endswith("+changes") else "")
    return (f"Measured by `{record['command']}` at commit {commit} on {machine['cpu']}, "
            f"{machine['cores']} cores, {record['date']} (record: `reports/{record['name']}.json`).\n")


def render_install(record):
    figures = record["figures"]
    rows = ["| environment | installed by | packages | download from the public index | on disk |",
            "|---|---|---|---|---|"]
    for name, command in (("core", "`make repro`"), ("test", "`make test`")):
        entry = figures[name]
        disk = f"{entry['disk_mb']:,} MB" if "disk_mb" in entry else "not measured"
        rows.append(f"| {name} | {command} | {entry['packages']} | {entry['download_mb']:,} MB | {disk} |")
    largest = ", ".join(f"{package} {mb:,} MB" for package, mb in
                        sorted(figures["test"]["largest"].items(), key=lambda item: -item[1])[:5])
    return "\n".join(rows) + f"\n\nThe largest downloads of the test environment: {largest}.\n\n" + measured_by(record)


def render_pipeline(record):
    figures = record["figures"]
    stages = ", ".join(f"{name} {seconds:,.1f} s" for name, seconds in figures["stage_seconds"].items())
    errors = " / ".join(str(count) for count in figures["test_errors"].values())
    models = " / ".join(figures["test_errors"])
    unchanged = (f" `dvc repro` with nothing changed: {figures['unchanged_repro_seconds']} s."
                 if "unchanged_repro_seconds" in figures else "")
    return (f"{figures['total_seconds']:,.0f} s of stages in all ({stages}); test errors {errors} ({models}).{unchanged}"
            "\n\n" + measured_by(record))


VARIANTS = {  # the bench's pair rows, as the docs name them
    "ours": "`hinton`, cached teacher logits",
    "ours_again": "`hinton`, cached, a second identical instance (the bench's resolution)",
    "ours_standardize": "`hinton` + `standardize`, cached",
    "ours_dkd": "`dkd`, cached", "ours_dist": "`dist`, cached",
    "plain_jitter": "plain step on jittered inputs",
    "ours_views": "student on cached views of `jitter`",
    "keras_distiller": "`keras.distillation.Distiller` (teacher every step)",
    "ours_online": "`hinton`, teacher run on every batch", "ours_online_jitter": "online, on jittered inputs",
    "ours_hint": "`hint` (FitNets; online)", "ours_attention": "`attention` (online; conv maps in both)",
    "keras_io": "the keras.io example's `Distiller` (teacher every step)",
}
REFERENCES = {"plain": "a plain step", "plain_jitter": "a plain step on jittered inputs",
              "keras_distiller": "Keras's `Distiller`"}  # what a row's ratio is to, as the docs name it
CACHED_LOGITS = ("ours", "ours_standardize", "ours_dkd", "ours_dist")
ONLINE = ("ours_online", "ours_online_jitter")  # Hinton with the teacher run on every batch


def reference_of(entries):
    """What a bench row's ratios are to, from its entries (None where a pair lacks the row); records
    made before rows named their reference: a plain step."""
    return next(entry for entry in entries if entry is not None).get("reference", "plain")


def render_bench(record):
    """The pairs' table of one bench record, and how far a second run's ratios moved from it."""
    figures = record["figures"]
    ratios = figures["ratios"]
    pairs = [pair for pair in ("seed002", "seed000") if pair in ratios]
    names = {"seed002": "TA notebook's pair (batch 256)", "seed000": "keras.io example's pair (batch 64)"}
    rows = ["| variant | against | " + " | ".join(names[pair] for pair in pairs) + " |",
            "|---" * (len(pairs) + 2) + "|"]
    for variant, label in VARIANTS.items():
        entries = [ratios[pair].get(variant) for pair in pairs]
        if all(entry is None for entry in entries):
            continue
        reference = reference_of(entries)
        cells = ["—" if entry is None else
                 f"{entry['cpu_ratio']:.2f} ({entry['cpu_spread'][0]:.2f}–{entry['cpu_spread'][1]:.2f}); "
                 f"wall {entry['ratio']:.2f}, {entry['ms']:.1f} ms" for entry in entries]
        rows.append(f"| {label} | {REFERENCES[reference]} | " + " | ".join(cells) + " |")
    plain = ", ".join(f"{ratios[pair]['plain']['ms']:.1f} ms on the {names[pair].split(' (')[0]}" for pair in pairs)
    text = "\n".join(rows) + f"\n\nA plain step took {plain}.\n\n"
    if all("ours_again" in ratios[pair] for pair in pairs):
        twins = ", ".join(f"{ratios[pair]['ours_again']['cpu_ratio'] / ratios[pair]['ours']['cpu_ratio']:.3f} on the "
                          f"{names[pair].split(' (')[0]}" for pair in pairs)
        text += f"The identical instance's CPU time over the first's: {twins}.\n\n"
    if "rkd" in ratios:
        sizes = sorted(ratios["rkd"].items(), key=lambda item: int(item[0]))
        costs = ", ".join(f"batch {size} {entry['ours_rkd']['ratio']:.1f}× ({entry['ours_rkd']['ms']:.0f} ms)"
                          for size, entry in sizes)
        text += f"RKD with the teacher online, against a plain step of the TA notebook's student: {costs}.\n\n"
        if all("ours_rkd_sampled" in entry for _, entry in sizes):
            costs = ", ".join(f"batch {size} {entry['ours_rkd_sampled']['ratio']:.1f}×" for size, entry in sizes)
            text += f"The same with the angle over 16,384 sampled triplets (`angle_triplets`): {costs}.\n\n"
    prices = figures.get("prices", [])
    again = Path(record["root"]) / "reports" / "bench" / "distill_step_again.json"
    runs = (ratios,)
    if again.is_file():
        second = json.loads(again.read_text())["figures"]["ratios"]
        runs = (ratios, second)

        def moves(field, variants):
            return [abs(second[pair][v][field] / ratios[pair][v][field] - 1) for pair in pairs for v in ratios[pair]
                    if v in variants and v in second.get(pair, {})]

        def moved(field):
            found = moves(field, [v for v in VARIANTS if v not in prices])
            return (f"at most {100 * max(found):.1f} % (median {100 * sorted(found)[len(found) // 2]:.1f} %; "
                    f"{sum(move <= 0.05 for move in found)} of {len(found)} within 5 %)")

        text += (f"A second run, right after (`reports/bench/distill_step_again.json`), moved every CPU ratio "
                 f"but the prices below by {moved('cpu_ratio')}, and every such wall ratio by {moved('ratio')}.")
        if prices:
            price_moves = "; ".join(
                f"on the {names[pair].split(' (')[0]}, " + ", ".join(
                    f"{VARIANTS[v].split(' (')[0]} {ratios[pair][v]['cpu_ratio']:.2f} then {second[pair][v]['cpu_ratio']:.2f}"
                    for v in prices if v in ratios[pair] and v in second[pair])
                + f" (a plain step {ratios[pair]['plain']['ms']:.1f} then {second[pair]['plain']['ms']:.1f} ms)"
                for pair in pairs)
            text += (" The prices, the two rows that compare unlike work against a plain step and so follow the "
                     f"machine's speed level: {price_moves}.")
        text += "\n\n"
    for field, clock in (("cpu_ratio", "CPU time"), ("ratio", "wall time")):
        def span(variants, reference):
            found = [run[pair][v][field] for run in runs for pair in pairs for v in variants
                     if run.get(pair, {}).get(v, {}).get("reference", "plain") == reference and v in run.get(pair, {})]
            return f"{min(found):.2f}–{max(found):.2f}" if found else None
        cached, views, online = span(CACHED_LOGITS, "plain"), span(["ours_views"], "plain_jitter"), \
            span(ONLINE, "keras_distiller")
        if cached and views:
            text += (f"Over {'both runs' if len(runs) == 2 else 'the run'}, in {clock}: the cached logit losses "
                     f"cost {cached} a plain step, a student on cached views {views} a plain step on the same "
                     f"jittered inputs" + (f", Hinton's loss with the teacher run on every batch {online} Keras's "
                                           "`Distiller`" if online else "") + ".\n\n")
    return text + measured_by(record)


def render_sections(record):
    """The bench's other sections: float32 against bfloat16, the time around a step, the streamed data path."""
    ratios = record["figures"]["ratios"]
    flags = [flag for flag in record["machine"]["flags"] if "bf16" in flag] or ["no bfloat16 flags"]
    text = ""
    if "precision" in ratios:
        rows = ["| plain step, batch 256 | float32 | `mixed_bfloat16` | ratio (spread) |", "|---|---|---|---|"]
        for model, entry in ratios["precision"].items():
            bf16 = entry["mixed_bfloat16"]
            rows.append(f"| {model} | {entry['float32']['ms']:.2f} ms | {bf16['ms']:.2f} ms | {bf16['ratio']:.2f} "
                        f"({bf16['spread'][0]:.2f}–{bf16['spread'][1]:.2f}) |")
        text += f"Precision, on this CPU ({', '.join(flags)}):\n\n" + "\n".join(rows) + "\n\n"
    if "fit_overhead" in ratios:
        cells = "; ".join(f"{name} {entry['ms']:.2f} ms ({entry['ratio']:.2f})"
                          for name, entry in ratios["fit_overhead"].items())
        text += f"The teacher's float32 step, around it: {cells}.\n\n"
    if "data_path" in ratios:
        rows = ["| step | streamed from disk | in memory | ratio (spread) |", "|---|---|---|---|"]
        for name in ("teacher", "student kd"):
            streamed, memory = ratios["data_path"][f"{name}, streamed"], ratios["data_path"][f"{name}, in memory"]
            rows.append(f"| {name} | {streamed['ms']:.2f} ms | {memory['ms']:.2f} ms | {streamed['ratio']:.2f} "
                        f"({streamed['spread'][0]:.2f}–{streamed['spread'][1]:.2f}) |")
        text += "The data path (54,000 MNIST-sized images, batch 256):\n\n" + "\n".join(rows) + "\n\n"
    if "views_forward" in ratios:
        eager, compiled = ratios["views_forward"]["eager"], ratios["views_forward"]["compiled"]
        text += (f"The views stage's teacher forward pass, a block of images: {eager['ms']:.1f} ms called op by op "
                 f"(eager), {compiled['ms']:.1f} ms compiled: {compiled['ratio']:.2f} "
                 f"({compiled['spread'][0]:.2f}–{compiled['spread'][1]:.2f}).\n\n")
    return text + measured_by(record)


def render_backends(record):
    """The pairs' rows under each backend: ms a step and the CPU ratio to the row's reference in that backend."""
    figures = record["figures"]
    backends = [name for name in ("tensorflow", "jax", "torch") if name in figures]
    pairs = {"seed002": "TA-notebook pair", "seed000": "keras.io pair"}
    header = " | ".join(f"{pairs[pair]}: {backend}" for pair in pairs for backend in backends)
    rows = [f"| variant | against | {header} |", "|---" * (2 + len(pairs) * len(backends)) + "|"]
    for variant, label in {"plain": "plain student step", **VARIANTS}.items():
        entries = [figures[backend].get(pair, {}).get(variant) for pair in pairs for backend in backends]
        if all(entry is None for entry in entries):
            continue
        reference = reference_of(entries)
        cells = ["—" if entry is None else f"{entry['ms']:.1f}" if variant == "plain"
                 else f"{entry['ms']:.1f} ({entry['cpu_ratio']:.2f})" for entry in entries]
        rows.append(f"| {label} | {'' if variant == 'plain' else REFERENCES[reference]} | " + " | ".join(cells) + " |")
    return ("Milliseconds a step (wall time, the 25th percentile of a variant's steps: TensorFlow's interleaved step "
            f"by step as in speed.md, JAX's and PyTorch's over {figures['rounds']} rounds of Keras's `fit`) and, in "
            "brackets, the CPU-time ratio to the row's reference in that backend:\n\n"
            + "\n".join(rows) + "\n\n" + measured_by(record))


def render_data_memory(record):
    rows = ["| images | size | stored (uint8) | prepare, images/s | prepare, peak RSS | train, ms/step | train, peak RSS |",
            "|---|---|---|---|---|---|---|"]
    for row in record["figures"]["rows"]:
        rows.append(f"| {row['images']:,} | {row['pixels']}×{row['pixels']} | {row['stored_mb']:,} MB | "
                    f"{row['prepare']['images_per_s']:,.0f} | {row['prepare']['peak_rss_mb']:,} MB | "
                    f"{row['train']['ms_per_step']:.0f} | {row['train']['peak_rss_mb']:,} MB |")
    text = "\n".join(rows) + "\n\n"
    first = record["figures"]["rows"][0]
    if "prepare_one_core" in first:
        one = first["prepare_one_core"]["images_per_s"]
        text += (f"`prepare` on {first['images']:,} images: {first['prepare']['images_per_s']:,.0f} images/s on "
                 f"{record['machine']['cores']} cores against {one:,.0f} on one (`taskset -c 0`), "
                 f"{first['prepare']['images_per_s'] / one:.2f}×.\n\n")
    return text + measured_by(record)


def render_step_profile(record):
    """Where each variant's step goes: op time per category, from TensorFlow's profiler, and the
    ops each step's graph holds once Grappler has optimized it."""
    figures = record["figures"]
    variants = figures["variants"]
    categories = list(next(iter(variants.values()))["op_ms"])
    labels = {"plain": "plain step", **VARIANTS}
    rows = ["| step (ms) | wall | " + " | ".join(categories) + " | ops |", "|---" * (3 + len(categories)) + "|"]
    for name, entry in variants.items():
        rows.append(f"| {labels.get(name, name)} | {entry['wall_ms']:.2f} | "
                    + " | ".join(f"{entry['op_ms'][c]:.2f}" for c in categories) + f" | {entry['ops']} |")
    keras_io = "; ".join(f"{labels.get(name, name)} {count}" for name, count in figures["keras_io_ops"].items())
    return (f"Milliseconds a step over {figures['steps']} traced steps (batch {figures['batch_size']}): the wall time, "
            "then the op time of each part, summed over TensorFlow's threads; last, the ops the step's graph "
            "holds once Grappler has optimized it:\n\n" + "\n".join(rows) + "\n\n"
            + f"The same variants on the keras.io pair (batch 64), ops in the step: {keras_io}.\n\n"
            + measured_by(record))


RECORDS = {"install": render_install, "pipeline": render_pipeline,  # reports/<name>.json -> its Markdown
           "bench/distill_step": render_bench, "bench/sections": render_sections,
           "bench/backends": render_backends, "bench/data_memory": render_data_memory,
           "bench/step_profile": render_step_profile}


def reports(root):
    """``{marker name: (source path, Markdown)}`` for every report and record there is."""
    found = {"comparison": root / "reports" / "comparison.md"}
    found.update({f"seeds:{path.stem}": path for path in sorted((root / "reports" / "seeds").glob("*.md"))})
    rendered = {marker: (path, path.read_text()) for marker, path in found.items() if path.is_file()}
    rendered.update(paired_seeds(root))
    for name, render in RECORDS.items():
        path = root / "reports" / f"{name}.json"
        if path.is_file():
            rendered[f"record:{name}"] = (path, render({**json.loads(path.read_text()), "name": name, "root": root}))
    tuned = sorted((root / "reports" / "tune").glob("*.json"))
    if tuned:
        rendered["tune"] = (root / "reports" / "tune", render_tune([json.loads(path.read_text()) for path in tuned]))
    return rendered


PAIRED_SEEDS = re.compile(r"<!-- seeds:(\w+)-vs-(\w+):start -->")


def paired_seeds(root):
    """Every ``seeds:<a>-vs-<b>`` marker the pages hold whose two seeds reports exist, rendered."""
    from kd.seeds import versus_configuration

    rendered = {}
    for page in pages(root):
        for name, baseline in PAIRED_SEEDS.findall(page.read_text()):
            paths = [root / "reports" / "seeds" / f"{config}.json" for config in (name, baseline)]
            if all(path.is_file() for path in paths):
                summary, base = (json.loads(path.read_text()) for path in paths)
                rendered[f"seeds:{name}-vs-{baseline}"] = (paths[0], versus_configuration(summary, base, name, baseline))
    return rendered


def render_tune(reports):
    """One row per `make tune` report: the search's best against the current settings, then the verdict."""
    from kd.tuning import settings_text

    rows = ["| model (configuration) | best of the search | validation errors, current → best | "
            "test errors over seeds, current → best | gain, same seed | verdict | report |", "|---" * 7 + "|"]
    lines = []
    for report in reports:
        best, current = report["best"], next(t for t in report["trials"] if t["trial"] == 0)
        verdict = report["verdict"]
        name = report["model"] + ("" if report["config"] == "default" else f" ({report['config']})")
        stem = report["model"] + ("" if report["config"] == "default" else f"-{report['config']}")
        if verdict is None:
            tested, gain, call = "—", "—", "the current settings were the best" if best["trial"] == 0 else "not tested"
        else:
            tested = (f"{verdict['current']['mean']:.1f} ± {verdict['current']['std']:.1f} → "
                      f"{verdict['best']['mean']:.1f} ± {verdict['best']['std']:.1f}")
            gain, call = f"{verdict['gain_pt']['mean']:+.2f} ± {verdict['gain_pt']['std']:.2f} pt", verdict["call"]
        rows.append(f"| {name} | {settings_text(best['settings'])} | {current['validation_errors']} → "
                    f"{best['validation_errors']} | {tested} | {gain} | {call} | "
                    f"[{stem}.md](../reports/tune/{stem}.md) |")
        lines.append(f"`{name}`: {len(report['trials']) - 1} trials, commit {report['commit'][:7]}, "
                     f"{report['wall_seconds']:,.0f} s on {report['machine']['cpu']} ({report['machine']['cores']} cores)")
    return "\n".join(rows) + "\n\nMeasured by `make tune` (`tools/tune.py`): " + "; ".join(lines) + ".\n"


def paste(text, marker, report):
    """``text`` with ``report`` between the start and end lines of ``marker``; and how many there were."""
    pattern = re.compile(rf"(<!-- {re.escape(marker)}:start -->\n).*?(<!-- {re.escape(marker)}:end -->)", re.S)
    return pattern.subn(lambda match: match[1] + report + match[2], text)


def paste_reports(root=Path(".")):
    """Paste every report into the pages holding its marker; returns the pages rewritten."""
    root = Path(root)
    texts = {page: page.read_text() for page in pages(root)}
    unplaced = []
    for marker, (report_path, report) in reports(root).items():
        placed = 0
        for page, text in texts.items():
            texts[page], count = paste(text, marker, report)
            placed += count
        if not placed:
            unplaced.append(f"{report_path.relative_to(root)} (no <!-- {marker}:start --> marker)")
    changed = []
    for page, text in texts.items():
        if text != page.read_text():
            page.write_text(text)
            changed.append(page)
    for page in changed:
        print(f"updated {page.relative_to(root)}")
    for line in unplaced:
        print(f"not pasted anywhere: {line}")
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    paste_reports(parser.parse_args().root)


if __name__ == "__main__":
    main()
