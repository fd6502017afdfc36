"""`make tune`: the search's refusals and draws (fast), and one search end to end on a tiny config.

The end-to-end test runs the search with an audit hook that makes any kd process (a stage or the
tune tool) fail on opening a file of the test split: the search must finish anyway. The verdict,
run after it as a resumed search, is the only part that reads the test split.
"""

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from kd.errors import ParamsError
from kd.params import parse_params
from kd.tuning import check_search, draw, hydra_value, overrides
from test_pipeline import TINY, copy_project, run, stages_run

TUNE = {"trials": 3, "sampler": "random", "seed": 0, "seeds": [0, 1],
        "space": {"temperature": {"low": 1.0, "high": 8.0, "log": True},
                  "soft_target_weight": {"low": 0.1, "high": 0.9},
                  "optimizer.config.learning_rate": {"low": 0.0003, "high": 0.003, "log": True}}}


def with_tune(raw, **changes):
    raw = copy.deepcopy(raw)
    raw["tune"] = {**copy.deepcopy(TUNE), **changes}
    return raw


def refusal(raw, model="student"):
    with pytest.raises(ParamsError) as error:
        check_search(raw, model, parse_params(raw).tune)
    return str(error.value)


def test_draws_are_seeded_and_inside_their_ranges(raw_params):
    raw = with_tune(raw_params)
    tune = parse_params(raw).tune
    assert check_search(raw, "student", tune) == ("distill", frozenset())
    first, again = draw(tune), draw(tune)
    assert first == again and len(first) == 3
    assert draw(parse_params(with_tune(raw_params, seed=1)).tune) != first
    for trial in first:
        assert 1.0 <= trial["temperature"] <= 8.0 and 0.1 <= trial["soft_target_weight"] <= 0.9
        assert 0.0003 <= trial["optimizer.config.learning_rate"] <= 0.003
    grid = with_tune(raw_params, sampler="grid", trials=5,
                     space={"temperature": {"values": [2, 4]}, "soft_target_weight": {"values": [0.3, 0.7]}})
    assert draw(parse_params(grid).tune) == [{"temperature": 2, "soft_target_weight": 0.3},
                                             {"temperature": 2, "soft_target_weight": 0.7},
                                             {"temperature": 4, "soft_target_weight": 0.3},
                                             {"temperature": 4, "soft_target_weight": 0.7}]


def test_an_inherited_key_is_written_whole_into_the_models_entry(raw_params):
    lines = overrides(raw_params, "distill", "student", {"temperature": 2.5, "optimizer.config.learning_rate": 0.002})
    assert lines == ["++distill.student.temperature=2.5",
                     "++distill.student.optimizer={class_name:Adam,config:{learning_rate:0.002}}"]
    assert hydra_value({"a": [1, None, True, "x y"]}) == "{a:[1,null,true,'x y']}"


def test_a_searched_model_gets_its_own_seed_and_the_rest_keep_the_files(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["distill"]["student"]["seed"] = 7
    params = parse_params(raw)
    assert params.seed_of(params.model("student")) == 7 and params.seed_of(params.model("ta")) == raw["seed"]
    raw["distill"]["student"]["seed"] = -1
    with pytest.raises(ParamsError, match=r"^distill\.student\.seed: expected an integer >= 0, found -1"):
        parse_params(raw)


@pytest.mark.parametrize("space, message", [
    ({"temperature": {"low": 0, "high": 4}},
     r"^tune\.space\.temperature: 0\.0 is refused by the pipeline: distill\.student\.temperature: expected a number > 0"),
    ({"soft_target_weight": {"low": 0.5, "high": 1.5}},
     r"^tune\.space\.soft_target_weight: 1\.5 is refused .*expected a number in \[0, 1\], found 1\.5"),
    ({"temprature": {"low": 1, "high": 4}}, r"^tune\.space\.temprature: 'temprature' is not a params key"),
    ({"teacher": {"values": ["teacher"]}}, r"^tune\.space\.teacher: teacher is not searched"),
    ({"epochs": {"low": 0.4, "high": 3}},  # drawn as integers, as the model's epochs are
     r"^tune\.space\.epochs: 0 is refused .*distill\.student\.epochs: expected an integer >= 1"),
])
def test_a_range_the_pipeline_would_refuse_is_refused_up_front(raw_params, space, message):
    assert re.search(message, refusal(with_tune(raw_params, space=space))), refusal(with_tune(raw_params, space=space))


@pytest.mark.parametrize("changes, message", [
    ({"trials": 0}, r"^tune\.trials: expected an integer >= 1, found 0$"),
    ({"space": {"temperature": {"low": 4, "high": 2}}}, r"^tune\.space\.temperature: low 4 is above high 2"),
    ({"space": {"temperature": {"values": []}}}, r"^tune\.space\.temperature\.values: expected a non-empty list"),
    ({"space": {}}, r"^tune\.space: expected at least one key"),
    ({"sampler": "tpe"}, r"^tune\.sampler: expected one of random, grid, found 'tpe'"),
    ({"seeds": [0, 0]}, r"^tune\.seeds: \[0, 0\] names a seed twice"),
])
def test_a_bad_search_section_is_refused_by_params(raw_params, changes, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(with_tune(raw_params, **changes))


def test_a_model_without_a_teacher_has_nothing_to_tune(raw_params):
    assert refusal(with_tune(raw_params), "teacher").startswith(
        "model 'teacher' is in train: and learns from no teacher; nothing to tune (distilled models: ta, student")
    assert refusal(with_tune(raw_params), "nobody").startswith("no model named 'nobody' in params.yaml")
    grid = with_tune(raw_params, sampler="grid")
    with pytest.raises(ParamsError, match=r"^tune\.space\.temperature: the grid sampler needs `values"):
        draw(parse_params(grid).tune)


GUARD = textwrap.dedent("""
    # Any kd process (a stage script or the tune tool) that opens a file of the test split fails.
    import os, sys

    def _refuse_test_split(event, args):
        if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        program = sys.argv[0] if sys.argv else ""
        if "stages/" not in program and "tune.py" not in program:
            return
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        if "data/test" in os.fsdecode(args[0]).replace(os.sep, "/") and not set(mode) & set("wax"):
            raise PermissionError(f"the test split was read by {program}: {os.fsdecode(args[0])}")

    sys.addaudithook(_refuse_test_split)
""")


def tool(repo, *args, guard=None):
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if guard is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(guard), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(repo / "tools" / "tune.py"), *args], cwd=repo, env=environment,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    tiny = {**TINY, "tune": {**TUNE, "trials": 2}, "export.models": ["student"]}
    repo = copy_project(tmp_path_factory.mktemp("tune") / "repo", tiny)
    run(["dvc", "repro", "distill@student"], repo)
    return repo


def test_the_search_never_reads_the_test_split_and_the_verdict_does(repo, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(GUARD)
    environment = {**os.environ, "PYTHONPATH": str(tmp_path),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The guard works: the evaluate stage, which reads the test split, fails under it.
    evaluate = subprocess.run([sys.executable, "stages/evaluate.py"], cwd=repo, env=environment,
                              capture_output=True, text=True)
    assert evaluate.returncode != 0 and "the test split was read by stages/evaluate.py" in evaluate.stderr

    params_before = (repo / "params.yaml").read_bytes()
    searched = tool(repo, "student", "--search-only", guard=tmp_path)
    assert searched.returncode == 0, searched.stdout[-2000:] + searched.stderr[-2000:]
    assert stages_run(searched.stdout + searched.stderr) == ["distill@student"]
    assert "trial 2 of 2" in searched.stdout and "best so far" in searched.stdout
    report = json.loads((repo / "reports" / "tune" / "student.json").read_text())
    assert [t["trial"] for t in report["trials"]] == [0, 1, 2] and report["verdict"] is None
    names = {t["experiment"] for t in report["trials"]}
    listed = run(["dvc", "exp", "show", "--json"], repo, stdout_only=True)
    assert names <= {e["name"] for c in json.loads(listed) for e in (c.get("experiments") or [])}
    for trial in report["trials"][1:]:  # each trial's params are its experiment's
        assert f"{trial['settings']['temperature']}" in listed
    assert (repo / "params.yaml").read_bytes() == params_before  # trials ran in DVC's temporary copies

    # The same command resumes: the finished trials are reused, then the verdict tests the best.
    full = tool(repo, "student")
    assert full.returncode == 0, full.stdout[-2000:] + full.stderr[-2000:]
    ran = full.stdout + full.stderr
    assert "already ran" in ran and "-00 " not in ran.split("verdict")[0].replace("-00 -S", "")
    report = json.loads((repo / "reports" / "tune" / "student.json").read_text())
    markdown = (repo / "reports" / "tune" / "student.md").read_text()
    assert report["commit"] and report["machine"]["cpu"] and report["wall_seconds"] > 0
    if report["best"]["trial"] == 0:
        assert "already the best" in markdown and report["verdict"] is None
    else:
        assert len(report["verdict"]["best"]["values"]) == 2 and "Verdict on the test split" in markdown
        assert f"dvc exp apply {report['best']['experiment']}" in markdown
    assert json.loads((repo / "reports" / "tune" / "trials" / "student.json").read_text())[0]["trial"] == 0


def test_refusals_come_before_any_trial(repo):
    bad = repo / "params.yaml"
    original = bad.read_text()
    try:
        raw = yaml.safe_load(original)
        raw["tune"]["space"]["soft_target_weight"]["high"] = 1.9
        bad.write_text(yaml.safe_dump(raw, sort_keys=False))
        refused = tool(repo, "student")
        assert refused.returncode == 1 and "dvc exp run" not in refused.stdout
        assert refused.stderr.strip().splitlines()[-1].startswith(
            "error: tune.space.soft_target_weight: 1.9 is refused by the pipeline")
        refused = tool(repo, "teacher")
        assert refused.returncode == 1 and "nothing to tune" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        bad.write_text(original)


def test_a_stopped_search_keeps_its_finished_trials_and_says_how_to_resume(repo):
    import signal
    import time

    path = repo / "params.yaml"
    original = path.read_text()
    raw = yaml.safe_load(original)
    raw["tune"]["seed"] = 7  # another search: new trials
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    edited = path.read_bytes()
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([sys.executable, str(repo / "tools" / "tune.py"), "student", "--search-only"], cwd=repo,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        output = ""
        deadline = time.monotonic() + 300
        for line in process.stdout:  # stop it once trial 0 is done and trial 1 runs
            output += line
            if "-01 " in line and line.startswith("$ dvc exp run"):
                break
            assert time.monotonic() < deadline, output
        # The worst moment to stop: while DVC stashes trial 1, with the trial's params written into the
        # workspace's params.yaml and HEAD detached (if it is missed, the stop still comes, a little later).
        stashing = time.monotonic() + 60
        while path.read_bytes() == edited and time.monotonic() < stashing:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=120)
        assert process.returncode == 130, output + rest + errors
        assert "interrupted: the finished trials are kept" in errors and "run the same command again" in errors
        assert path.read_bytes() == edited, "the stop left a trial's params in the workspace's params.yaml"
        assert run(["git", "symbolic-ref", "-q", "HEAD"], repo, stdout_only=True).strip(), "HEAD left detached"
        prefix = re.search(r"experiments (tune-student-\w+)-NN", output)[1]
        listed = run(["dvc", "exp", "show", "--json"], repo, stdout_only=True)
        names = {e["name"] for c in json.loads(listed) for e in (c.get("experiments") or [])}
        assert f"{prefix}-00" in names  # what finished is kept
        assert not running_in(repo), "a trial's processes outlived the search"
        resumed = tool(repo, "student", "--search-only")
        assert resumed.returncode == 0 and "already ran" in resumed.stdout, resumed.stdout[-2000:] + resumed.stderr
        assert f"$ dvc exp run --temp distill@student -n {prefix}-00" not in resumed.stdout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        path.write_text(original)


def running_in(repo, wait=30):
    """The processes (DVC's, a stage's) still running in ``repo`` or its experiments' copies, after ``wait`` s."""
    import time

    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(repo) in os.readlink(proc / "cwd"):
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1)
