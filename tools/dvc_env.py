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
    return {**os.environ, "PATH": path}
