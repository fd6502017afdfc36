"""The experiments of the current commit as one compact table: what changed, then what moved.

`dvc exp show` lists every param and metric of every experiment; with a few models and
architectures as params that is hundreds of columns. This prints, as Markdown, one row per
experiment (and the workspace and baseline): first the params that differ between them, then
each model's test accuracy and errors where they differ, so a sweep reads at a glance.

    python tools/experiments.py          # make exp
"""

import json
import subprocess
import sys
from pathlib import Path

from dvc_env import dvc_environment  # tools/, beside this script

METRICS = ("accuracy", "errors")


def flatten(tree, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept whole."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def rows_of(shown):
    """``[(label, params, metrics), ...]`` for the workspace, the baseline and its experiments."""
    rows = []
    for commit in shown:
        revisions = [("workspace" if commit["rev"] == "workspace" else commit["rev"][:7], commit)]
        # Queued, running and failed experiments are listed with their baseline's results: left out.
        revisions += [(f"{experiment.get('name') or experiment['revs'][0]['rev'][:7]}", experiment["revs"][0])
                      for experiment in commit.get("experiments") or []
                      if (experiment.get("executor") or {}).get("state", "success") == "success"]
        for label, revision in revisions:
            data = revision.get("data") or {}
            if revision.get("error") or not data:
                continue
            params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
            metrics = {}
            for path, entry in (data.get("metrics") or {}).items():
                if Path(path).parent.as_posix() == "metrics" and "data" in entry:
                    metrics.update({f"{Path(path).stem} {key}": entry["data"][key]
                                    for key in METRICS if key in entry["data"]})
            rows.append((label, params, metrics))
    return rows


def table(rows):
    """Markdown: the params that differ between rows, then the metrics that differ."""
    def differing(key_sets, values_of):
        keys = sorted(set().union(*key_sets))
        return [key for key in keys if len({json.dumps(values_of(row, key), sort_keys=True) for row in rows}) > 1]

    params = differing([row[1] for row in rows], lambda row, key: row[1].get(key))
    metrics = differing([row[2] for row in rows], lambda row, key: row[2].get(key))
    header = ["experiment", *params, *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row_params, row_metrics in rows:
        cells = [label] + [_cell(row_params.get(key)) for key in params] \
            + [_cell(row_metrics.get(key), digits=4) for key in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value, digits=None):
    if value is None:
        return "—"
    if isinstance(value, float) and digits is not None:
        return f"{value:.{digits}f}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def main():
    result = subprocess.run(["dvc", "exp", "show", "--json"], text=True, capture_output=True,
                            env=dvc_environment("exp"))
    if result.returncode != 0:
        sys.exit(f"error: `dvc exp show --json` failed: {result.stderr.strip()}")
    rows = rows_of(json.loads(result.stdout))
    if not rows:
        sys.exit("error: no experiments with results on this commit (run `dvc exp run` first)")
    print(table(rows), end="")


if __name__ == "__main__":
    main()
