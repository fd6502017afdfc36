"""The environment the tools run DVC in: this Python's (the project's .venv) first on PATH."""

import os
import shutil
import sys
from pathlib import Path


def dvc_environment(make_target):
    """``os.environ`` with this Python's environment first on PATH, where DVC finds `dvc` for its
    queue workers and the stages find `python`; exits with one line when dvc is not installed there."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("dvc", path=path) is None:
        sys.exit(f"error: dvc is not installed in this environment: run `make {make_target}`, or activate .venv first")
    # A queued experiment runs in a copy of the repository (.dvc/tmp/exps/...); a relative PYTHONPATH
    # makes its stages import that copy's src/kd, the code DVC records, not the editable install's.
    python_path = os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": python_path}
