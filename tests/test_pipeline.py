"""End to end: the real dvc.yaml on a tiny config in a copy of the repository.

Checks that one `dvc repro` writes every output, that a second runs nothing, that a
forced rerun of the teacher leaves its students up to date (byte-stable artifacts),
and that editing the student's temperature reruns only the student's stages.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, set_keys

MODELS = ["teacher", "student_scratch", "ta", "student", "student_direct"]
DISTILLED = {"ta", "student", "student_direct"}
TINY = {"data.limit": 300, "training.epochs": 1, "evaluate.latency_repeats": 5, "evaluate.throughput_repeats": 2}


def run(args, cwd, check=True, stdout_only=False):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{output[-3000:]}")
    return result.stdout if stdout_only else output


def stages_run(output):
    return sorted(set(re.findall(r"Running stage '([^']+)'", output)))


def set_params(repo, updates):
    path = repo / "params.yaml"
    path.write_text(yaml.safe_dump(set_keys(yaml.safe_load(path.read_text()), updates), sort_keys=False))


def copy_project(repo, updates):
    """A git + DVC copy of the project's tracked files at ``repo``, with ``updates`` to params committed."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "dvc.lock")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    set_params(repo, updates)
    run(["git", "init", "-q"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty"], repo)
    commit(repo, "tiny config")
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC copy of the project's tracked files with the tiny config committed."""
    return copy_project(tmp_path_factory.mktemp("pipeline") / "repo", TINY)


def commit(repo, message):
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, "--allow-empty"], repo)


def test_pipeline_end_to_end(repo):
    first = run(["dvc", "repro"], repo)
    expected_stages = ["prepare"] + [f"train@{m}" for m in ("teacher", "student_scratch")]
    expected_stages += [f"distill@{m}" for m in ("ta", "student", "student_direct")]
    expected_stages += ["export@student", "export@ta", "export@teacher"]
    assert stages_run(first) == sorted(expected_stages + ["evaluate"])

    for split in ("train", "validation", "test"):
        assert (repo / "data" / split / "x.npy").is_file()
    comparison = json.loads((repo / "reports" / "comparison.json").read_text())["models"]
    for model in MODELS:
        assert (repo / "models" / f"{model}.keras").is_file()
        assert (repo / "logits" / f"{model}.npy").is_file()
        assert (repo / "dvclive" / model / "plots" / "metrics" / "eval" / "accuracy.tsv").is_file()
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        assert set(metrics) == {"accuracy", "loss", "errors", "params", "flops", "size_bytes", "precision",
                                "chosen_by"} | ({"agreement"} if model in DISTILLED else set())
        assert metrics["errors"] == round((1 - metrics["accuracy"]) * 10000)
        assert ("agreement" in metrics) == (model in DISTILLED)
        assert comparison[model]["accuracy"] == metrics["accuracy"]
        assert comparison[model]["latency_ms_batch1"] > 0
    assert (repo / "dvclive" / "student" / "plots" / "metrics" / "train" / "soft_loss.tsv").is_file()
    for stage in ["prepare", "evaluate"] + [s for s in expected_stages if "@" in s]:
        assert json.loads((repo / "timings" / f"{stage}.json").read_text())["seconds"] > 0
    assert comparison["student"]["flops"] == 1_237_941
    # The shipped files, measured like every model.
    exported = json.loads((repo / "reports" / "comparison.json").read_text())["exported"]
    assert set(exported) == {f"{model} · {kind}" for model in ("student", "ta", "teacher") for kind in ("float32", "int8")}
    int8 = json.loads((repo / "metrics" / "exported" / "student.int8.json").read_text())
    assert int8["size_bytes"] < 0.3 * json.loads((repo / "metrics" / "student.json").read_text())["size_bytes"]
    assert int8["agreement"] > 0.9 and abs(int8["vs_keras"]) < 0.05
    assert "| student · int8 |" in (repo / "reports" / "comparison.md").read_text()
    assert "gain_vs_student_scratch" in comparison["student"]
    for name in ("accuracy_vs_flops.png", "accuracy_vs_flops.json", "validation_accuracy.png"):
        assert (repo / "plots" / name).is_file()
    validation = json.loads((repo / "plots" / "curves" / "validation_accuracy.json").read_text())
    assert {row["model"] for row in validation} == set(MODELS)
    soft = json.loads((repo / "plots" / "curves" / "train_soft_loss.json").read_text())
    assert {row["model"] for row in soft} == DISTILLED
    rendered = run(["dvc", "plots", "show", "--json"], repo, stdout_only=True)
    assert "plots/curves/validation_accuracy.json" in rendered and "plots/accuracy_vs_flops.json" in rendered
    assert "| student |" in (repo / "reports" / "comparison.md").read_text()
    shown = run(["dvc", "metrics", "show"], repo, stdout_only=True)
    assert "metrics/student.json" in shown and "flops" in shown and "accuracy" in shown
    assert "failed" not in shown
    assert max(len(line) for line in shown.splitlines()) <= 160, shown  # readable in a terminal
    assert "timings" not in shown and "versions" not in shown
    commit(repo, "first run")

    # The shipped student is a DVC artifact: registered (a GTO tag), `dvc artifacts get` fetches it.
    run([str(Path(sys.executable).parent / "gto"), "register", "student-int8", "HEAD", "--version", "v0.1.0"], repo)
    fetched = repo.parent / "fetched"
    fetched.mkdir(exist_ok=True)
    run(["dvc", "artifacts", "get", str(repo), "student-int8", "-o", str(fetched / "student.tflite")], fetched)
    assert (fetched / "student.tflite").read_bytes() == (repo / "exported" / "student" / "int8.tflite").read_bytes()

    # Nothing changed: nothing runs.
    assert stages_run(run(["dvc", "repro"], repo)) == []

    # A forced, real rerun of the teacher writes identical bytes: its students stay up to date.
    forced = run(["dvc", "repro", "--force", "--single-item", "train@teacher", "--no-run-cache"], repo)
    assert stages_run(forced) == ["train@teacher"]
    assert "up to date" in run(["dvc", "status"], repo)

    # The student's temperature: only the student's own stages rerun.
    set_params(repo, {"distill.student.temperature": 2.0})
    changed = run(["dvc", "repro"], repo)
    assert stages_run(changed) == ["distill@student", "evaluate", "export@student"]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, stdout_only=True))
    assert "accuracy" in diff["metrics/student.json"] or "loss" in diff["metrics/student.json"]
    assert "metrics/teacher.json" not in diff  # its model did not change, nor its numbers
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo, stdout_only=True))
    assert params_diff["params.yaml"]["distill.student.temperature"] == {"old": 4.0, "new": 2.0, "diff": -2.0}
    commit(repo, "student at T=2")

    # A smaller architecture for the student alone: its params and FLOPs move, nothing else reruns.
    set_params(repo, {
        "architectures.fc_small": [{"class_name": "Flatten"},
                                   {"class_name": "Dense", "config": {"units": 64, "activation": "relu"}}],
        "distill.student.architecture": "fc_small",
    })
    assert stages_run(run(["dvc", "repro"], repo)) == ["distill@student", "evaluate", "export@student"]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, stdout_only=True))["metrics/student.json"]
    assert diff["params"]["new"] == 784 * 64 + 64 + 64 * 10 + 10
    assert diff["flops"]["new"] < diff["flops"]["old"]


def test_results_travel_through_an_s3_compatible_remote(repo, tmp_path):
    """Push the pipeline's outputs to a real S3-compatible server (moto, on 127.0.0.1) from one
    clone and pull them into a fresh one: there `dvc repro` runs nothing and the metrics match."""
    import boto3
    from moto.server import ThreadedMotoServer

    run(["dvc", "repro"], repo)
    commit(repo, "results to share")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="kd", aws_secret_access_key="kd",
                     region_name="us-east-1").create_bucket(Bucket="kd-remote")

        def use_s3(clone, url=endpoint):  # local config: credentials and endpoint stay out of git
            for args in (["remote", "add", "-f", "-d", "--local", "team", "s3://kd-remote/cache"],
                         ["remote", "modify", "--local", "team", "endpointurl", url],
                         ["remote", "modify", "--local", "team", "access_key_id", "kd"],
                         ["remote", "modify", "--local", "team", "secret_access_key", "kd"]):
                run(["dvc", *args], clone)

        use_s3(repo)
        assert "(remote 'team', s3://kd-remote/cache)" in run([sys.executable, "tools/remote.py", "push"], repo,
                                                              stdout_only=True)  # what `make push` runs
        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
        use_s3(clone)
        run([sys.executable, "tools/remote.py", "pull"], clone)
        assert stages_run(run(["dvc", "repro"], clone)) == []
        assert run(["dvc", "metrics", "show"], clone, stdout_only=True) == \
            run(["dvc", "metrics", "show"], repo, stdout_only=True)
        assert (clone / "models" / "student.keras").read_bytes() == (repo / "models" / "student.keras").read_bytes()

        # A remote that cannot be reached: one line naming it, and the local cache as it was.
        cache = sorted(str(p) for p in (clone / ".dvc" / "cache").rglob("*"))
        run(["dvc", "remote", "modify", "--local", "team", "endpointurl", f"http://127.0.0.1:{free_port()}"], clone)
        (clone / "models" / "student.keras").unlink()
        result = subprocess.run([sys.executable, "tools/remote.py", "pull"], cwd=clone, capture_output=True, text=True,
                                env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: remote 'team' (s3://kd-remote/cache): pull failed: "), \
            result.stderr
        assert sorted(str(p) for p in (clone / ".dvc" / "cache").rglob("*")) == cache
    finally:
        server.stop()


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_bytes(repo):
    return {p.name: p.read_bytes() for p in sorted((repo / "metrics").glob("*.json"))}


def test_same_params_same_metrics_other_seed_other_results(repo):
    run(["dvc", "repro"], repo)
    before = metrics_bytes(repo)
    rerun = run(["dvc", "repro", "--force", "--no-run-cache"], repo)
    assert "train@teacher" in stages_run(rerun) and "evaluate" in stages_run(rerun)
    assert metrics_bytes(repo) == before  # latencies, which are measured, are in reports/ only

    teacher_logits = (repo / "logits" / "teacher.npy").read_bytes()
    set_params(repo, {"seed": 1})
    run(["dvc", "repro", "train@teacher"], repo)
    assert (repo / "logits" / "teacher.npy").read_bytes() != teacher_logits
    set_params(repo, {"seed": 0})


def test_a_killed_stage_leaves_nothing_and_reruns(repo):
    run(["dvc", "repro"], repo)
    set_params(repo, {"train.student_scratch.epochs": 500})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("Epoch 3/"):
            break
    os.killpg(process.pid, signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode != 0, "".join(seen)[-2000:]
    leftovers = sorted(p.name for d in ("models", "logits") for p in (repo / d).iterdir())
    assert "student_scratch.keras" not in leftovers and "student_scratch.npy" not in leftovers
    assert not [name for name in leftovers if name.startswith(".tmp")]

    set_params(repo, {"train.student_scratch.epochs": 2})
    assert "train@student_scratch" in stages_run(run(["dvc", "repro"], repo))
    assert (repo / "models" / "student_scratch.keras").is_file()
    assert "up to date" in run(["dvc", "status"], repo)


def run_all(repo, jobs, timeout=900):
    """`dvc exp run --run-all -j <jobs>`'s output. DVC can leave a queue worker that never exits once
    every task has run, and the command waits on it (treeverse/dvc#10398): then the workers are
    stopped and what ran is read from the queue, each task's own log."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(["dvc", "exp", "run", "--run-all", "-j", str(jobs)], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output[-3000:]
        return output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    for _ in range(60):  # the tasks still running finish in the workers
        statuses = run(["dvc", "queue", "status"], repo, stdout_only=True)
        if "Queued" not in statuses and "Running" not in statuses:
            break
        time.sleep(10)
    run(["dvc", "queue", "stop", "--kill"], repo, check=False)
    for proc in Path("/proc").glob("[0-9]*"):  # the worker DVC left, in this repository
        try:
            if b"queue-worker" in (proc / "cmdline").read_bytes() and (proc / "cwd").resolve() == repo.resolve():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue
    statuses = run(["dvc", "queue", "status"], repo, stdout_only=True)
    assert "Queued" not in statuses and "Running" not in statuses and "Failed" not in statuses, statuses
    return "".join(run(["dvc", "queue", "logs", task], repo) for task in queue_tasks(repo))


def queue_tasks(repo):
    """The task ids `dvc queue status` lists."""
    lines = run(["dvc", "queue", "status"], repo, stdout_only=True).splitlines()
    return [line.split()[0] for line in lines[1:] if line.strip() and not line.startswith("Worker")]


def test_a_student_sweep_retrains_only_the_student(repo):
    run(["dvc", "repro"], repo)
    commit(repo, "baseline for the sweep")
    run(["dvc", "exp", "run", "--queue", "-S", "distill.student.temperature=1,8"], repo)
    swept = run_all(repo, jobs=2)  # two queue workers at once
    # Teacher and TA are unchanged: each experiment reruns the student and the evaluation only.
    assert stages_run(swept) == ["distill@student", "evaluate", "export@student"]
    assert swept.count("Running stage 'distill@student'") == 2

    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, stdout_only=True))
    experiments = [rev for baseline in shown for exp in (baseline.get("experiments") or []) for rev in exp["revs"]]
    by_temperature = {
        rev["data"]["params"]["params.yaml"]["data"]["distill"]["student"]["temperature"]:
            rev["data"]["metrics"]["metrics/student.json"]["data"]
        for rev in experiments
    }
    assert set(by_temperature) == {1, 8}
    assert by_temperature[1] != by_temperature[8]


def test_other_losses_and_several_teachers_are_one_params_entry_each(repo):
    """A FitNets student (online: it reads the teacher's layer) and a DGKD student (cached logits of
    two teachers) are added as params entries: only their stages and the evaluation run."""
    run(["dvc", "repro"], repo)
    commit(repo, "before the methods")
    student = {"architecture": "fc_student", "temperature": 4.0, "soft_target_weight": 0.5}
    set_params(repo, {
        "distill.kd_hint": {**student, "teacher": "teacher",
                            "loss": {"kind": "hint", "student_layer": "dense_1", "teacher_layer": "dense"}},
        "distill.kd_dgkd": {**student, "teacher": "ta", "teachers": ["ta", "teacher"], "dense": True, "drop": 1},
    })
    output = run(["dvc", "repro"], repo)
    assert stages_run(output) == ["distill@kd_dgkd", "distill@kd_hint", "evaluate"]
    assert "kd_hint: distilling from 'teacher' (T=4.0, soft_target_weight=0.5, loss 100·hint(student_layer=dense_1, " \
           "teacher_layer=dense)) with online (the hint term reads its layers)" in output
    assert "kd_dgkd: distilling from 'ta' ×1, 'teacher' ×1 (DGKD, drop 1) (T=4.0, soft_target_weight=0.5, " \
           "loss hinton) with its cached logits" in output
    per_teacher = json.loads((repo / "plots" / "curves" / "terms" / "train_hinton_teacher.json").read_text())
    assert {row["model"] for row in per_teacher} == {"kd_dgkd"}  # a curve per term, found, not listed
    comparison = json.loads((repo / "reports" / "comparison.json").read_text())["models"]
    assert comparison["kd_hint"]["params"] == comparison["student_direct"]["params"]  # the regressor is not saved
    assert "gain_vs_student_direct" in comparison["kd_dgkd"]
    commit(repo, "with the methods")

    # Removing them removes their outputs and lock entries on the next repro: nothing stale.
    set_params(repo, {"distill": yaml.safe_load((ROOT / "params.yaml").read_text())["distill"]})
    output = run(["dvc", "repro"], repo)
    assert "removed models/kd_hint.keras: its model or export is no longer in params.yaml" in output
    for path in ("models/kd_hint.keras", "logits/kd_dgkd.npy", "dvclive/kd_hint", "timings/distill@kd_dgkd.json",
                 "metrics/kd_hint.json", "plots/curves/terms/train_hinton_teacher.json"):
        assert not (repo / path).exists(), path
    assert "kd_" not in (repo / "dvc.lock").read_text()
    assert "kd_" not in run(["dvc", "metrics", "show"], repo, stdout_only=True)
    assert "up to date" in run(["dvc", "status"], repo)


def test_views_are_computed_once_and_a_student_on_them_reruns_only_with_them(repo):
    """A views entry and a student on it: their two stages run; a new count reruns both, a new
    temperature the student alone; removing them leaves nothing behind."""
    run(["dvc", "repro"], repo)
    commit(repo, "before the views")
    set_params(repo, {
        "views": {"teacher_jitter": {"teacher": "teacher", "augmentation": "jitter", "count": 2}},
        "distill_views": {"kd_views": {"architecture": "fc_student", "views": "teacher_jitter", "temperature": 4.0,
                                       "soft_target_weight": 0.5}},
    })
    output = run(["dvc", "repro"], repo)
    assert stages_run(output) == ["distill_views@kd_views", "evaluate", "views@teacher_jitter"]
    assert "views@teacher_jitter: 2 views of each of 270 images through jitter, judged by 'teacher'" in output
    assert "kd_views: distilling from 'teacher' (T=4.0, soft_target_weight=0.5, loss hinton) with its cached " \
           "outputs on views 'teacher_jitter' (2 per image)" in output
    assert (repo / "logits" / "views" / "teacher_jitter" / "logits.npy").is_file()
    assert json.loads((repo / "metrics" / "kd_views.json").read_text())["accuracy"] > 0
    commit(repo, "with the views")
    set_params(repo, {"views.teacher_jitter.count": 3})
    assert stages_run(run(["dvc", "repro"], repo)) == ["distill_views@kd_views", "evaluate", "views@teacher_jitter"]
    set_params(repo, {"distill_views.kd_views.temperature": 2.0})
    assert stages_run(run(["dvc", "repro"], repo)) == ["distill_views@kd_views", "evaluate"]
    commit(repo, "other views")

    set_params(repo, {"views": {}, "distill_views": {}})
    output = run(["dvc", "repro"], repo)
    for path in ("models/kd_views.keras", "logits/views/teacher_jitter", "timings/views@teacher_jitter.json",
                 "timings/distill_views@kd_views.json", "metrics/kd_views.json"):
        assert not (repo / path).exists(), path
    assert "kd_views" not in (repo / "dvc.lock").read_text() and "teacher_jitter" not in (repo / "dvc.lock").read_text()
    assert "up to date" in run(["dvc", "status"], repo)


def test_a_mutual_group_is_one_stage_and_its_peers_are_models(repo):
    """Two peers trained together: one group stage, a publishing stage each, rows in the comparison,
    and a peer can teach a student like any model; removing them leaves nothing behind."""
    run(["dvc", "repro"], repo)
    commit(repo, "before the peers")
    set_params(repo, {
        "mutual": {"pair": {"temperature": 1.0, "soft_target_weight": 0.5}},
        "peers": {"peer_a": {"architecture": "fc_student", "group": "pair"},
                  "peer_b": {"architecture": "fc_student", "group": "pair"}},
        "distill.kd_from_peer": {"architecture": "fc_student", "teacher": "peer_a", "temperature": 4.0,
                                 "soft_target_weight": 0.5},
    })
    output = run(["dvc", "repro"], repo)
    assert stages_run(output) == ["distill@kd_from_peer", "evaluate", "mutual@pair", "peer@peer_a", "peer@peer_b"]
    comparison = json.loads((repo / "reports" / "comparison.json").read_text())["models"]
    assert comparison["peer_a"]["teacher"] == "with peer_b" and "gain_vs_student_scratch" in comparison["peer_a"]
    assert comparison["kd_from_peer"]["teacher"] == "peer_a"
    commit(repo, "with the peers")
    set_params(repo, {"mutual.pair.temperature": 2.0})
    assert stages_run(run(["dvc", "repro"], repo)) == ["distill@kd_from_peer", "evaluate", "mutual@pair",
                                                       "peer@peer_a", "peer@peer_b"]
    commit(repo, "other temperature")

    set_params(repo, {"mutual": {}, "peers": {},
                      "distill": yaml.safe_load((ROOT / "params.yaml").read_text())["distill"]})
    run(["dvc", "repro"], repo)
    for path in ("models/peer_a.keras", "mutual/pair", "dvclive/peer_b", "timings/mutual@pair.json",
                 "timings/peer@peer_a.json", "metrics/peer_a.json", "models/kd_from_peer.keras"):
        assert not (repo / path).exists(), path
    assert "peer_" not in (repo / "dvc.lock").read_text() and "mutual@" not in (repo / "dvc.lock").read_text()
    assert "up to date" in run(["dvc", "status"], repo)


def test_the_best_configuration_over_two_seeds(repo):
    """configs/best.txt through tools/seeds.py: online teacher, no TA, a report, the workspace untouched."""
    # Earlier tests may have given the student another architecture; the gain needs the scratch's.
    set_params(repo, {"distill.student.architecture": "fc_student", "train.student_scratch.architecture": "fc_student"})
    run(["dvc", "repro"], repo)
    commit(repo, "baseline for the seeds")
    params_before = (repo / "params.yaml").read_text()
    output = run([sys.executable, "tools/seeds.py", "best", "--seeds", "0", "1"], repo)
    # prepare's params and deps are unchanged: DVC's run-cache restores its outputs instead.
    assert stages_run(output) == sorted(["train@teacher", "train@student_scratch", "distill@student",
                                         "export@student", "export@teacher", "evaluate"])
    log = run(["dvc", "queue", "logs", "best-seed1"], repo)  # the whole log of one experiment
    assert re.search(r"student: distilling from 'teacher' \(T=[\d.]+, soft_target_weight=[\d.]+, loss hinton\) "
                     r"with online \(it runs on every augmented batch\)", log)
    assert (repo / "params.yaml").read_text() == params_before

    summary = json.loads((repo / "reports" / "seeds" / "best.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert set(summary["models"]) == {"teacher", "student_scratch", "student"}
    gain = summary["gains"]["student vs student_scratch"]
    assert len(gain["values"]) == 2 and gain["values"][0] != gain["values"][1]
    report = (repo / "reports" / "seeds" / "best.md").read_text()
    assert "| student | teacher |" in report and "| student vs student_scratch |" in report
    # The record of what produced it: the commit, the machine, every stage's seconds.
    assert summary["commit"] and summary["machine"]["cores"] >= 1 and summary["machine"]["cpu"]
    assert {"train@teacher", "distill@student", "evaluate"} <= set(summary["stage_seconds"]["0"])

    again = run([sys.executable, "tools/seeds.py", "best", "--seeds", "0", "1"], repo)
    assert "best-seed0: already ran on this commit" in again and not stages_run(again)


def test_model_seeds_vary_one_model_under_a_teacher_trained_once(repo):
    """--model-seeds: the seed is the student's own; teacher, scratch control and split are the file's,
    restored by DVC's run-cache (they ran with these params in the test above), never trained again."""
    output = run([sys.executable, "tools/seeds.py", "best", "--seeds", "0", "1", "--model-seeds", "student"], repo)
    assert stages_run(output) == ["distill@student", "evaluate", "export@student"]
    summary = json.loads((repo / "reports" / "seeds" / "best.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["model_seeds"] == ["student"]
    teacher, student = summary["models"]["teacher"]["errors"], summary["models"]["student"]["errors"]
    assert teacher["values"][0] == teacher["values"][1] and student["values"][0] != student["values"][1]
    assert "the seed being the own `seed` of student" in (repo / "reports" / "seeds" / "best.md").read_text()

    refused = run([sys.executable, "tools/seeds.py", "best", "--seeds", "0", "--model-seeds", "studnet"], repo, check=False)
    assert "--model-seeds: no model named 'studnet'" in refused and "Traceback" not in refused
