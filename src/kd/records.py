"""Records of measurements: each figure the docs cite is written with what produced it.

A record is a JSON file under ``reports/`` holding the figures and their provenance: the
commit, the command, the machine (CPU model, the SIMD flags that change kernel choice, core
count), the versions of kd and of the libraries it runs on, and the wall time. Timings from two
records are comparable only when the machines are the same; the record says which.
"""

import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

# The CPU flags that decide which kernels TensorFlow, XLA and oneDNN pick.
SIMD_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512.*|amx.*|avx_vnni)$")
LIBRARIES = ("kd", "tensorflow", "keras", "numpy", "dvc", "jax", "torch")


def machine():
    """``{"cpu": ..., "flags": [...], "cores": n, "system": ...}`` of this machine."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = sorted(flag for flag in value.split() if SIMD_FLAGS.match(flag))
    except OSError:  # not Linux: the model from platform is what there is
        pass
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "system": platform.platform()}


def versions():
    """The installed versions of kd and the libraries its figures depend on (absent ones left out)."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def commit(root=".", paths=()):
    """The checked-out commit, with ``+changes`` when the work tree differs from it (in ``paths``, when
    given: the files that make the figures, not the results a run rewrites); None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def record(figures, started, command=None, root=".", code=()):
    """A record of ``figures`` measured since ``started`` (a ``time.perf_counter()``); ``code``: the
    paths whose uncommitted changes would make the figures another commit's (default: all)."""
    return {
        "figures": figures,
        "commit": commit(root, code),
        "command": command or shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
