"""The CI workflow is valid, runs the tests as .ci/run does and then only make and DVC; `make report` shows what moved."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pipeline.yml"


def test_workflow_is_valid_github_actions_yaml():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"]
    steps = job["steps"]
    assert all(("uses" in step) != ("run" in step) for step in steps)
    commands = [step["run"] for step in steps if "run" in step]
    # The tests exactly as .ci/run runs them (with the plots page's browser), then only make and DVC.
    assert commands[0] == "bash .ci/run" and "make test" in (ROOT / ".ci" / "run").read_text()
    assert all(command.split()[0] in ("make", "dvc") for command in commands[1:]), commands
    assert "make ci-repro" in commands and "make verify" in commands
    assert any(command.startswith("make report") and "GITHUB_STEP_SUMMARY" in command for command in commands)


def test_ci_overrides_name_real_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    lines = [line for line in (ROOT / "configs" / "ci.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines
    for line in lines:
        key, _ = line.split("=", 1)
        node = params
        for part in key.split("."):
            assert part in node, f"{key} is not a key of params.yaml"
            node = node[part]


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_report_shows_the_changed_metric(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    (repo / "reports").mkdir()
    git(repo, "init", "-q")
    subprocess.run(["dvc", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: 'true'\n    params: [temperature]\nmetrics:\n  - metrics\n")
    (repo / "params.yaml").write_text("temperature: 4.0\n")
    (repo / "metrics" / "student.json").write_text(json.dumps({"accuracy": 0.9859, "errors": 141}))
    (repo / "reports" / "comparison.md").write_text("| model | test accuracy |\n|---|---|\n| student | 98.59 % |\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "params.yaml").write_text("temperature: 2.0\n")
    (repo / "metrics" / "student.json").write_text(json.dumps({"accuracy": 0.9848, "errors": 152}))
    git(repo, "commit", "-qam", "change")

    result = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "report", "BASE=HEAD~1"],
                            cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "## Metrics" in report and "metrics/student.json" in report
    assert "0.9859" in report and "0.9848" in report and "errors" in report
    assert "temperature" in report and "4.0" in report and "2.0" in report
    assert "| student | 98.59 % |" in report


def test_make_readme_pastes_the_reports_between_their_markers(tmp_path):
    (tmp_path / "reports" / "seeds").mkdir(parents=True)
    (tmp_path / "reports" / "comparison.md").write_text("| new comparison |\n")
    (tmp_path / "reports" / "seeds" / "best.md").write_text("| new best |\n")
    (tmp_path / "README.md").write_text(
        "intro\n<!-- comparison:start -->\nold\n<!-- comparison:end -->\nmiddle\n"
        "<!-- seeds:best:start -->\nold\n<!-- seeds:best:end -->\n"
        "<!-- seeds:default:start -->\nkept\n<!-- seeds:default:end -->\nend\n"
    )
    subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py")], cwd=tmp_path, check=True)
    assert (tmp_path / "README.md").read_text() == (
        "intro\n<!-- comparison:start -->\n| new comparison |\n<!-- comparison:end -->\nmiddle\n"
        "<!-- seeds:best:start -->\n| new best |\n<!-- seeds:best:end -->\n"
        "<!-- seeds:default:start -->\nkept\n<!-- seeds:default:end -->\nend\n"
    )


def test_make_exp_shows_what_differs_first_then_what_moved(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))  # as when the script runs: its folder first
    experiments = runpy.run_path(str(ROOT / "tools" / "experiments.py"))
    rows_of, table = experiments["rows_of"], experiments["table"]

    def revision(temperature, accuracy):
        return {"data": {
            "params": {"params.yaml": {"data": {"seed": 0, "distill": {"student": {"temperature": temperature}},
                                                "architectures": {"fc": [{"class_name": "Dense"}]}}}},
            "metrics": {"metrics/student.json": {"data": {"accuracy": accuracy, "errors": 100, "flops": 5}},
                        "metrics/teacher.json": {"data": {"accuracy": 0.99, "errors": 80}}}}}

    shown = [{"rev": "workspace", **revision(4.0, 0.9859)},
             {"rev": "abcdef1234", **revision(4.0, 0.9859),
              "experiments": [{"name": "hot", "revs": [{"rev": "1234567", **revision(8.0, 0.9870)}]}]}]
    text = table(rows_of(shown))
    assert text.splitlines()[0] == "| experiment | distill.student.temperature | student accuracy |"
    assert "| hot | 8.0 | 0.9870 |" in text and "| abcdef1 | 4.0 | 0.9859 |" in text


def test_ci_reruns_only_what_changed_with_a_persisted_dvc_cache(tmp_path):
    """The workflow's `make ci-repro` twice, each time in a fresh checkout with DVC's cache carried
    over (as actions/cache does): after a change to the student alone, only the student's stages run."""
    import shutil

    from test_pipeline import TINY, commit, copy_project, run, set_params, stages_run

    origin = copy_project(tmp_path / "origin", {})
    (origin / "configs" / "ci.txt").write_text("".join(f"{key}={value}\n" for key, value in TINY.items()))
    commit(origin, "a tiny CI config")

    def ci_run(checkout):
        settings = [line for line in (checkout / "configs" / "ci.txt").read_text().splitlines() if line]
        return run(["dvc", "exp", "run", *(f"-S{setting}" for setting in settings)], checkout)  # make ci-repro

    first = tmp_path / "first"
    run(["git", "clone", "-q", str(origin), str(first)], tmp_path)
    assert "train@teacher" in stages_run(ci_run(first))

    set_params(origin, {"distill.student.temperature": 2.0})
    commit(origin, "a warmer student")
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(origin), str(second)], tmp_path)
    shutil.copytree(first / ".dvc" / "cache", second / ".dvc" / "cache")  # what actions/cache restores
    output = ci_run(second)
    assert stages_run(output) == ["distill@student", "evaluate", "export@student"]
    for stage in ("prepare", "train@teacher", "distill@ta", "train@student_scratch", "export@teacher"):
        assert f"Stage '{stage}' is cached - skipping run" in output, stage
    assert "up to date" in run(["dvc", "status"], second)
