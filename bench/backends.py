"""Benchmark: the bench's pair rows under each Keras backend, one process per backend, one record.

Runs ``bench/distill_step.py --only pairs`` with ``KERAS_BACKEND`` set to tensorflow, jax and torch in
turn (a backend is chosen before Keras is imported, so each needs its own process), and writes their
ratios into one record: ``{"figures": {"tensorflow": {...}, "jax": {...}, "torch": {...}}}`` with the
commit, the machine and the versions. Ratios compare within a backend; milliseconds across backends
only within this one record (one machine, one run).

    python bench/backends.py --record reports/bench/backends.json [--rounds 5] [--steps 10]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks per variant (JAX and PyTorch steps are slow)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    figures = {"rounds": args.rounds, "steps": args.steps}
    with tempfile.TemporaryDirectory() as folder:
        for backend in BACKENDS:
            path = Path(folder) / f"{backend}.json"
            command = [sys.executable, str(ROOT / "bench" / "distill_step.py"), "--only", "pairs",
                       "--rounds", str(args.rounds), "--steps", str(args.steps), "--record", str(path)]
            print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", flush=True)
            if subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend}).returncode != 0:
                sys.exit(f"error: the bench failed under {backend} (is it installed? make backends)")
            figures[backend] = json.loads(path.read_text())["figures"]["ratios"]

    from kd.artifacts import write_json
    from kd.records import record

    write_json(args.record, record(figures, started, root=ROOT, code=("bench", "src")))
    print(f"wrote {args.record}")


if __name__ == "__main__":
    main()
