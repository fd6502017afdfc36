"""Shared fixtures: the repository root and the default params as a mutable dict."""

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def child_environment(**variables):
    """``os.environ`` for a child Python that imports these tests' helpers (kd itself is installed)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **variables}


def set_keys(raw, updates):
    """Set dotted keys (``"distill.student.temperature"``) of a params mapping in place."""
    for dotted, value in updates.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[leaf] = value
    return raw


@pytest.fixture(scope="session")
def default_params_raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def raw_params(default_params_raw):
    """A fresh deep copy of params.yaml's contents, to break in one place per test."""
    return copy.deepcopy(default_params_raw)
