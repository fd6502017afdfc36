"""The record of the last `dvc repro`: each stage's wall time (timings/<stage>.json, which every
stage writes) and each model's test errors (metrics/<model>.json), with the commit and machine.

    python tools/pipeline_record.py      # after `make repro`: writes reports/pipeline.json

`make readme` renders it where README.md and docs/ hold its marker, so the run time they cite
is the one a committed record holds. A stage DVC restored from its cache keeps the time of the
run that made it.
"""

import argparse
import json
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
    figures = {"stage_seconds": timings, "total_seconds": round(sum(timings.values()), 1), "test_errors": errors}
    write_json(ROOT / "reports" / "pipeline.json", record(figures, started, command="make repro; python tools/pipeline_record.py",
                                                          root=root, code=CODE))
    print(f"reports/pipeline.json: {len(timings)} stages, {figures['total_seconds']} s, test errors {errors}")


if __name__ == "__main__":
    run_stage(main)
