"""The record of the last `dvc repro`: each stage's wall time (timings/<stage>.json, which every
stage writes), each model's test errors (metrics/<model>.json), and how long `dvc repro` takes
when nothing changed (timed here, three times, the fastest kept), with the commit and machine.

    python tools/pipeline_record.py      # after `make repro`: writes reports/pipeline.json

`make readme` renders it where README.md and docs/ hold its marker, so the run time they cite
is the one a committed record holds. A stage DVC restored from its cache keeps the time of the
run that made it.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kd.artifacts import write_json
from kd.errors import KdError, run_stage
from kd.records import record

ROOT = Path(__file__).resolve().parents[1]
CODE = ("src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml", "constraints.txt")  # what makes the results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository the pipeline ran in")
    root = parser.parse_args(argv).root.resolve()
    started = time.perf_counter()
    timings = {path.stem: json.loads(path.read_text())["seconds"] for path in sorted((root / "timings").glob("*.json"))}
    if not timings:
        raise KdError("timings/ holds no stage times: run the pipeline first (make repro)")
    errors = {path.stem: json.loads(path.read_text())["errors"] for path in sorted((root / "metrics").glob("*.json"))}
    figures = {"stage_seconds": timings, "total_seconds": round(sum(timings.values()), 1), "test_errors": errors,
               "unchanged_repro_seconds": unchanged_repro_seconds(root)}
    write_json(ROOT / "reports" / "pipeline.json", record(figures, started, command="make repro; python tools/pipeline_record.py",
                                                          root=root, code=CODE))
    print(f"reports/pipeline.json: {len(timings)} stages, {figures['total_seconds']} s, test errors {errors}; "
          f"`dvc repro` with nothing changed: {figures['unchanged_repro_seconds']} s")


def unchanged_repro_seconds(root):
    """The fastest of three `dvc repro` runs in ``root``, each of which must find nothing to run."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    times = []
    for _ in range(3):
        began = time.perf_counter()
        result = subprocess.run(["dvc", "repro"], cwd=root, env=environment, capture_output=True, text=True)
        times.append(time.perf_counter() - began)
        if result.returncode != 0 or "Running stage" in result.stdout:
            raise KdError(f"`dvc repro` in {root} is not a no-op (run the pipeline first):\n{result.stdout[-500:]}")
    return round(min(times), 2)


if __name__ == "__main__":
    run_stage(main)
