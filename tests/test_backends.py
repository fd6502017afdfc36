"""kd's training core on each of Keras's backends: the loss terms against their NumPy references,
the trainer against Keras's own fit, the teacher sources (cached logits, online, views), mutual
learning, and a training stage that imports no TensorFlow, whose .keras file TensorFlow then reads.

Each backend runs in its own process (Keras takes its backend once, from KERAS_BACKEND); this
process is TensorFlow's, where the rest of the suite runs.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, child_environment, set_keys
from kd.errors import ParamsError
from kd.params import parse_params

BACKENDS = [backend for backend in ("jax", "torch") if importlib.util.find_spec(backend)]
pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither jax nor torch is installed (kd[test] has both: make install-test)")


def under(backend, args, cwd=ROOT):
    env = child_environment(KERAS_BACKEND=backend, KD_RAW_STDERR="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loss_terms_match_their_references(backend):
    result = under(backend, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_loss_kinds.py", "tests/test_losses.py"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


TRAINER = r"""
import sys
from kd.devices import use_backend
use_backend(sys.argv[1])
import keras, numpy as np, yaml
from test_training import small_spec, toy_splits
from kd.batches import predict_logits, training_batches
from kd.models import build_model
from kd.devices import training_scope
from kd.inspection import feature_layers
from kd.losses.objective import Objective
from kd.seeding import seed_everything, set_random_seed
from kd.teachers import Teachers
from kd.training import DistillationTrainer, fit
assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
raw = lambda: yaml.safe_load(open(sys.argv[2]))
train, validation = toy_splits()
report = {}

# 1. On hard labels the trainer is Keras's own fit: the same weights after the same batches.
def small():
    set_random_seed(0)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3)])
x, y = train.images[:], train.y
plain = small()
plain.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
plain.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
ours = DistillationTrainer(small())
ours.compile(keras.optimizers.Adam(1e-2))
ours.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
report["same_as_keras"] = max(float(np.abs(a - b).max()) for a, b in zip(plain.get_weights(), ours.student.get_weights()))

# 2. A teacher, then a student on its cached logits (streamed), then one online with jitter and a hint.
seed_everything(0)
spec = small_spec(raw(), "teacher", epochs=8)
with training_scope(spec) as setup:
    teacher = build_model(spec, (4, 4, 1), 3)
    history = fit(teacher, spec, train, validation, seed=0)
report["setup"] = setup
report["teacher_val_accuracy"] = history.history["val_accuracy"][-1]
logits = predict_logits(teacher, train.images)
student_spec = small_spec(raw(), "student", epochs=8)
with training_scope(student_spec):
    student = build_model(student_spec, (4, 4, 1), 3)
    history = fit(student, student_spec, train, validation, seed=0, teachers=Teachers(["ta"], logits=[logits]),
              objective=Objective.of(student_spec.distillation))
report["cached_soft_loss"] = [history.history["soft_loss"][0], history.history["soft_loss"][-1]]
online_spec = small_spec(raw(), "student", epochs=2, augmentation="jitter",
                         loss={"kind": "hint", "student_layer": "dense", "teacher_layer": "dense"})
with training_scope(online_spec):
    student = build_model(online_spec, (4, 4, 1), 3)
    history = fit(student, online_spec, train, validation, seed=0,
                  teachers=Teachers(["ta"], models=[feature_layers(teacher, ["dense"], "test", "teacher")]),
                  objective=Objective.of(online_spec.distillation))
report["online_loss"] = history.history["loss"]

# 3. Views: the student rebuilds exactly the views the teacher judged, on this backend too.
import tempfile
from pathlib import Path
from kd.artifacts import save_model
from kd.params import parse_params
from kd.views import ViewInputs, Views, compute_views
folder = Path(tempfile.mkdtemp())
save_model(teacher, folder / "teacher.keras")
params = raw()
params["architectures"]["tiny"] = [{"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16}}]
params["train"] = {"teacher": {"architecture": "tiny"}}
params["distill"], params["export"]["models"] = {}, []
params["views"] = {"tj": {"teacher": "teacher", "augmentation": "jitter", "count": 2, "mixup": 1.0}}
params["distill_views"] = {"student": {"architecture": "tiny", "views": "tj", "temperature": 4.0, "soft_target_weight": 0.5}}
views = parse_params(params).views["tj"]
(folder / "views").mkdir()
compute_views(views, teacher, train, folder / "views", 0, folder / "teacher.keras")
reader, rebuild = Views(views, folder / "views", train, 0, folder / "teacher.keras"), ViewInputs(views, (4, 4, 1), 0)
inputs, (labels, cached) = training_batches(train, batch_size=64, shuffle_seed=0, views=reader, epochs=2)[0]
images, _ = rebuild({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()}, keras.ops.convert_to_tensor(inputs["images"]))
report["views_gap"] = float(np.abs(keras.ops.convert_to_numpy(teacher(images)) - cached["logits"]).max())

# 4. Mutual learning: two peers trained together.
from kd.mutual import fit_group
params = raw()
params["architectures"]["tiny"] = [{"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16}}]
params["mutual"] = {"pair": {"temperature": 1.0, "soft_target_weight": 0.5, "epochs": 3, "batch_size": 32}}
params["peers"] = {"a": {"architecture": "tiny", "group": "pair"}, "b": {"architecture": "tiny", "group": "pair"}}
parsed = parse_params(params)
with training_scope(parsed.model("a")):
    peers = fit_group(parsed.mutual["pair"], [parsed.model("a"), parsed.model("b")], train, validation, seed=0)
report["peers_finite"] = all(np.isfinite(w).all() for peer in peers for w in peer.get_weights())
report["tensorflow_imported"] = "tensorflow" in sys.modules
import json; print("REPORT", json.dumps(report))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_trainer_and_its_teacher_sources(backend):
    result = under(backend, [sys.executable, "-c", TRAINER, backend, str(ROOT / "params.yaml")])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert report["same_as_keras"] < 1e-6
    assert report["setup"] == {"precision": "float32", "chosen_by": "CPU", "replicas": 1, "backend": backend}
    assert report["teacher_val_accuracy"] > 0.6
    first, last = report["cached_soft_loss"]
    assert last < first
    assert all(np.isfinite(report["online_loss"]))
    assert report["views_gap"] < 1e-4
    assert report["peers_finite"]
    assert not report["tensorflow_imported"]


TINY = [{"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 8, "activation": "relu"}}]


def train_stage(model, folder, then="", script="train.py"):
    """stages/<script> <model> in ``folder``, started with KERAS_BACKEND=tensorflow: params choose
    the backend, not the shell. ``then``: a statement run after the stage in the same process."""
    runner = (f"import runpy, sys; sys.argv = ['stages/{script}', {model!r}]; "
              f"runpy.run_path({str(ROOT / 'stages' / script)!r}, run_name='__main__'); {then}")
    return under("tensorflow", [sys.executable, "-c", runner], cwd=folder)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_training_stage_under_another_backend_writes_a_model_tensorflow_reads(backend, tmp_path, raw_params):
    """The train stage under JAX or PyTorch: no TensorFlow imported, the backend recorded beside the
    precision, and a backend-neutral .keras file whose logits TensorFlow reproduces."""
    import keras

    from test_training import toy_splits

    raw_params["architectures"]["tiny"] = TINY
    raw_params["train"] = {"scratch": {"architecture": "tiny", "epochs": 2, "batch_size": 32, "backend": backend}}
    raw_params["distill"], raw_params["export"]["models"] = {}, []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    train, _ = toy_splits(folder=tmp_path / "data")
    result = train_stage("scratch", tmp_path, then="print('TENSORFLOW', 'tensorflow' in sys.modules)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{backend} backend" in result.stdout and "TENSORFLOW False" in result.stdout
    setup = json.loads((tmp_path / "dvclive" / "scratch" / "training.json").read_text())
    assert setup["backend"] == backend
    model = keras.models.load_model(tmp_path / "models" / "scratch.keras")  # here: TensorFlow
    np.testing.assert_allclose(model.predict(train.images[:], verbose=0), np.load(tmp_path / "logits" / "scratch.npy"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_teacher_tensorflow_trained_teaches_online_under_another_backend(backend, tmp_path, raw_params):
    """One stage runs one backend: the teacher's backend-neutral file is loaded under the student's."""
    from test_training import toy_splits

    raw_params["architectures"]["tiny"] = TINY
    raw_params["train"] = {"teacher": {"architecture": "tiny", "epochs": 1, "batch_size": 32}}
    raw_params["distill"] = {"student": {"architecture": "tiny", "teacher": "teacher", "epochs": 1, "batch_size": 32,
                                         "backend": backend, "augmentation": "jitter",
                                         "temperature": 4.0, "soft_target_weight": 0.5}}
    raw_params["export"]["models"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    toy_splits(folder=tmp_path / "data")
    for model, script in (("teacher", "train.py"), ("student", "distill.py")):
        result = train_stage(model, tmp_path, script=script)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "online" in result.stdout and f"{backend} backend" in result.stdout, result.stdout[-2000:]
    assert json.loads((tmp_path / "dvclive" / "student" / "training.json").read_text())["backend"] == backend
    assert (tmp_path / "models" / "student.keras").is_file()


@pytest.mark.parametrize("updates, message", [
    ({"training.backend": "mxnet"}, "training.backend: expected one of tensorflow, jax, torch, found 'mxnet'"),
    ({"train.teacher.backend": "jax", "training.distribution": "multi_worker"},
     "training.distribution: multi_worker is TensorFlow's MultiWorkerMirroredStrategy, but model 'teacher' trains "
     "under jax (train.teacher.backend)"),
    ({"train.teacher.backend": "torch", "train.teacher.distribution": "mirrored"},
     "train.teacher.distribution: mirrored needs tensorflow or jax; model 'teacher' trains under torch"),
])
def test_bad_backends_are_refused_naming_the_key(raw_params, updates, message):
    with pytest.raises(ParamsError) as error:
        parse_params(set_keys(raw_params, updates))
    assert message in str(error.value)


def test_a_backend_that_is_not_installed_is_refused_naming_the_package(monkeypatch):
    from kd import devices

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ParamsError, match=r"training.backend: jax, but the package 'jax' is not installed: "
                                          r"make backends \(or pip install -e '\.\[jax\]'\)"):
        devices.use_backend("jax")


def test_prepare_refuses_a_model_whose_backend_is_not_installed(raw_params, monkeypatch):
    from kd.models import check_models

    installed = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else installed(name))
    params = parse_params(set_keys(raw_params, {"train.student_scratch.backend": "torch"}))
    with pytest.raises(ParamsError, match=r"^training.backend of model 'student_scratch': torch, but the package "
                                          r"'torch' is not installed: make backends"):
        check_models(params, (28, 28, 1), 10)
