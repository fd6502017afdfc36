"""dvc.yaml's hand-kept lists match the code: each stage depends on exactly the kd modules its
script imports (directly or through other kd modules, at module level or inside functions)."""

import ast
from pathlib import Path

import yaml

from conftest import ROOT

SRC = ROOT / "src"


def kd_imports(path):
    """The ``kd`` modules a file imports anywhere in it, as paths relative to the repository."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kd":
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "kd")
    return {f"src/{name.replace('.', '/')}.py" for name in found if (SRC / f"{name.replace('.', '/')}.py").is_file()}


def closure(script):
    """``script`` and every kd module it reaches, with the package's ``__init__``."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(kd_imports(ROOT / path))
    return (seen - {script}) | {"src/kd/__init__.py"}


def stage_deps():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = next(part for part in body["cmd"].split() if part.startswith("stages/"))
        yield name, script, {dep for dep in body["deps"] if isinstance(dep, str) and dep.startswith("src/")}


def test_each_stage_depends_on_exactly_the_kd_modules_its_script_imports():
    checked = 0
    for name, script, deps in stage_deps():
        expected = closure(script)
        assert deps == expected, (
            f"stage {name} ({script}): dvc.yaml lists {sorted(deps - expected)} that it does not import, "
            f"and misses {sorted(expected - deps)}"
        )
        checked += 1
    assert checked >= 4


def test_the_closure_follows_imports_inside_functions(tmp_path):
    # kd.params imports kd.losses inside a function: a dependency all the same.
    assert "src/kd/losses.py" in kd_imports(ROOT / "src" / "kd" / "params.py")
    assert "src/kd/params.py" in closure("stages/prepare.py")
