"""dvc.yaml's kd dependencies match the code: each stage depends on exactly the kd modules its
script imports (directly or through other kd modules, at module level or inside functions), as
tools/stage_deps.py (`make deps`) writes them; and only the stages that train with a loss
depend on the loss maths."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

STAGE_DEPS = runpy.run_path(str(ROOT / "tools" / "stage_deps.py"))


def test_each_stage_depends_on_exactly_the_kd_modules_its_script_imports():
    text = (ROOT / "dvc.yaml").read_text()
    have, want = STAGE_DEPS["listed"](text), STAGE_DEPS["listed"](STAGE_DEPS["rewritten"](text))
    assert len(want) >= 8
    for name in want:
        assert have[name] == want[name], (f"stage {name}: dvc.yaml lists {sorted(set(have[name]) - set(want[name]))} "
                                          f"that it does not import, and misses {sorted(set(want[name]) - set(have[name]))}; "
                                          "run make deps")


def test_the_closure_follows_imports_inside_functions_and_package_inits():
    # kd.params imports the loss kinds inside a function: a dependency all the same, with the package's __init__.
    closure = STAGE_DEPS["closure"]("stages/prepare.py")
    assert {"src/kd/params/__init__.py", "src/kd/losses/kinds.py", "src/kd/losses/__init__.py"} <= closure


def test_only_the_stages_that_train_with_a_loss_depend_on_its_maths():
    for script in ("stages/prepare.py", "stages/train.py", "stages/views.py", "stages/export.py",
                   "stages/evaluate.py", "stages/pretrained.py", "stages/peer.py"):
        closure = STAGE_DEPS["closure"](script)
        assert not {"src/kd/losses/terms.py", "src/kd/losses/objective.py"} & closure, script
    for script in ("stages/distill.py", "stages/mutual.py"):
        assert "src/kd/losses/terms.py" in STAGE_DEPS["closure"](script), script


def repository_copy(tmp_path):
    """The files git tracks or would track, copied into a fresh git repository as a clone has them
    (no outputs), and the environment to run this Python's dvc in it."""
    copy = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    return copy, {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_editing_the_loss_maths_changes_only_the_stages_that_train_with_a_loss(tmp_path):
    """In a copy with every output faked and committed to a lock, an edit of kd/losses/terms.py makes
    `dvc status` report the distilling stages, and nothing upstream of them."""
    copy, env = repository_copy(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    faker = ("from dvc.repo import Repo\nfrom pathlib import Path\nrepo = Repo('.')\n"
             "for stage in repo.index.stages:\n"
             "    for out in stage.outs:\n"
             "        path = Path(out.fs_path)\n"
             "        if path.suffix:\n"
             "            path.parent.mkdir(parents=True, exist_ok=True); path.write_text(str(path))\n"
             "        else:\n"
             "            path.mkdir(parents=True, exist_ok=True); (path / 'fake').write_text(str(path))\n")
    subprocess.run([sys.executable, "-c", faker], cwd=copy, env=env, check=True, capture_output=True)
    result = subprocess.run([*dvc, "commit", "-f", "-q"], cwd=copy, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    terms = copy / "src" / "kd" / "losses" / "terms.py"
    terms.write_text(terms.read_text() + "\n# an edit of the maths\n")
    status = subprocess.run([*dvc, "status", "--json"], cwd=copy, env=env, capture_output=True, text=True, check=True)
    changed = {name for name, entries in json.loads(status.stdout).items()
               if any(isinstance(e, dict) and "changed deps" in e for e in entries)}
    assert "distill@student" in changed and "distill@ta" in changed
    assert all(name.split("@")[0] in ("distill", "distill_views", "mutual") for name in changed), changed


def test_dvc_yaml_runs_each_stage_kind_of_kd_stage_kinds_with_its_script_and_section():
    import yaml

    from kd.stage_kinds import KINDS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(KINDS)
    for name, stage in stages.items():
        kind = KINDS[name]
        assert stage.get("foreach") == (f"${{{kind.section}}}" if kind.section else None), name
        assert kind.script in stage.get("do", stage)["cmd"].split(), name


def test_no_kd_module_imports_itself_back_even_inside_functions():
    """No import circle in src/kd, function-level imports included (a package's modules may run its
    __init__, which is not a circle)."""
    modules = sorted((ROOT / "src" / "kd").rglob("*.py"))
    graph = {}
    for path in modules:
        graph[path] = {found for found in STAGE_DEPS["imported_files"](path) if found != path
                       and not (found.name == "__init__.py" and path.is_relative_to(found.parent))}
    done, circles = set(), []

    def visit(path, trail):
        for found in graph[path]:
            if found in trail:
                circles.append(" -> ".join(p.relative_to(ROOT).as_posix() for p in trail[trail.index(found):]))
            elif found not in done:
                visit(found, [*trail, found])
        done.add(path)

    for path in modules:
        if path not in done:
            visit(path, [path])
    assert not circles, circles[:5]


def test_the_committed_lock_describes_this_code(tmp_path):
    """With the outputs absent, as in a fresh clone, `dvc status` may report what the pipeline makes
    (outputs, and the folders of them other stages read) deleted or changed, and nothing else: a
    changed code file, source file, params value or command means dvc.lock was not rewritten by a
    run of this code (rerun the pipeline and commit the lock)."""
    copy, env = repository_copy(tmp_path)
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=copy, env=env, capture_output=True,
                            text=True, check=True)
    stale = []
    for stage, entries in json.loads(status.stdout).items():
        for entry in entries:
            if not isinstance(entry, dict):
                stale.append(f"{stage}: {entry}")
                continue
            for what, changes in entry.items():
                if what == "changed outs" or not isinstance(changes, dict):
                    continue
                stale += [f"{stage}: {what} {path} {how}" for path, how in changes.items()
                          if what == "changed params" or path.split("/")[0] in ("stages", "src", "sources")]
    assert not stale, "dvc.lock does not describe this code: " + "; ".join(stale[:10])
