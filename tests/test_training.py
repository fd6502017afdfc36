import numpy as np
import pytest

from kd.data import Split
from kd.errors import ArtifactError, TrainingError
from kd.models import build_model
from kd.params import parse_params
from kd.training import fit, predict_logits, seed_everything


def toy_splits(n=256, classes=3, seed=0):
    """Linearly separable 4x4 'images': the class sets which pixel block is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.random((n, 4, 4, 1)).astype(np.float32) * 0.2
    for c in range(classes):
        x[y == c, c, :, 0] += 1.0
    cut = n * 3 // 4
    return Split(x[:cut], y[:cut], classes), Split(x[cut:], y[cut:], classes)


def small_spec(raw_params, name, **overrides):
    raw_params["architectures"]["tiny"] = [
        {"class_name": "Flatten"},
        {"class_name": "Dense", "config": {"units": 16, "activation": "relu"}},
    ]
    section = "train" if name in raw_params["train"] else "distill"
    raw_params[section][name].update({"architecture": "tiny", "epochs": 5, "batch_size": 32, **overrides})
    return parse_params(raw_params).model(name)


def test_a_model_without_teacher_learns(raw_params):
    seed_everything(0)
    train, validation = toy_splits()
    spec = small_spec(raw_params, "teacher")
    model = build_model(spec, (4, 4, 1), 3)
    history = fit(model, spec, train, validation, seed=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9


def test_a_distilled_model_learns_and_logs_both_terms(raw_params):
    seed_everything(0)
    train, validation = toy_splits()
    teacher_logits = np.eye(3, dtype=np.float32)[train.y] * 5.0
    spec = small_spec(raw_params, "student")
    model = build_model(spec, (4, 4, 1), 3)
    history = fit(model, spec, train, validation, seed=0, teacher_logits=teacher_logits)
    assert {"hard_loss", "soft_loss"} <= set(history.history)
    assert history.history["soft_loss"][-1] < history.history["soft_loss"][0]
    agreement = np.mean(predict_logits(model, train.x).argmax(1) == teacher_logits.argmax(1))
    assert agreement > 0.9


def test_logits_of_the_wrong_length_are_refused(raw_params):
    train, validation = toy_splits()
    spec = small_spec(raw_params, "student")
    model = build_model(spec, (4, 4, 1), 3)
    with pytest.raises(ArtifactError, match=r"logits of teacher 'ta' have shape \(10, 3\); expected \(192, 3\)"):
        fit(model, spec, train, validation, seed=0, teacher_logits=np.zeros((10, 3), np.float32))


def test_a_diverging_loss_stops_training_naming_model_and_epoch(raw_params):
    seed_everything(0)
    train, validation = toy_splits()
    spec = small_spec(raw_params, "teacher", optimizer={"class_name": "SGD", "config": {"learning_rate": 1e30}})
    model = build_model(spec, (4, 4, 1), 3)
    with pytest.raises(TrainingError, match=r"model 'teacher': the training loss became nan in epoch 1"):
        fit(model, spec, train, validation, seed=0)


MIRRORED_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import yaml
from kd.models import build_model
from kd.params import parse_params
from kd.training import fit, seed_everything, training_scope
from test_training import small_spec, toy_splits

raw = yaml.safe_load(open(sys.argv[3]))
spec = small_spec(raw, "student", distribution="mirrored")
seed_everything(0)
train, validation = toy_splits()
teacher_logits = np.eye(3, dtype=np.float32)[train.y] * 5.0
with training_scope(spec):
    strategy = tf.distribute.get_strategy()
    model = build_model(spec, (4, 4, 1), 3)
    history = fit(model, spec, train, validation, seed=0, teacher_logits=teacher_logits)
print("REPLICAS", strategy.num_replicas_in_sync, type(strategy).__name__)
print("LOSS", history.history["loss"][0], history.history["loss"][-1])
print("VAL_ACCURACY", history.history["val_accuracy"][-1])
"""


def test_a_distillation_step_learns_under_mirrored_strategy_on_two_cpu_devices():
    import subprocess
    import sys as _sys

    from conftest import ROOT

    result = subprocess.run(
        [_sys.executable, "-c", MIRRORED_SCRIPT, str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "params.yaml")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.split(" ")[0].isupper())
    assert lines["REPLICAS"] == "2 MirroredStrategy"
    first, last = map(float, lines["LOSS"].split())
    assert last < first
    assert float(lines["VAL_ACCURACY"]) > 0.9


def test_mixed_precision_trains_with_float32_logits(raw_params):
    import keras

    from kd.training import training_scope

    seed_everything(0)
    train, validation = toy_splits()
    spec = small_spec(raw_params, "teacher", precision="mixed_float16")
    with training_scope(spec):
        model = build_model(spec, (4, 4, 1), 3)
        history = fit(model, spec, train, validation, seed=0)
    assert keras.config.dtype_policy().name == "float32"  # restored after the scope
    assert model.layers[0].dtype_policy.name == "mixed_float16"
    assert model.layers[-1].dtype_policy.name == "float32"
    assert history.history["val_accuracy"][-1] > 0.9


def test_the_online_teacher_runs_on_the_augmented_batch():
    """With augmentation, the teacher's soft targets come from the batch the student sees."""
    import keras

    from kd.losses import soft_target_loss
    from kd.params import Distillation
    from kd.training import DistillationTrainer

    seed_everything(0)
    x = np.random.default_rng(0).random((32, 4, 4, 1)).astype(np.float32)
    y = np.arange(32) % 3

    def dense_model(name):
        return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)], name=name)

    teacher, student = dense_model("teacher"), dense_model("student")
    # Shifts every image down by exactly one row: deterministic, so the expected loss is computable.
    augment = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.RandomTranslation(
        height_factor=(0.25, 0.25), width_factor=0.0, fill_mode="constant")])
    shifted = keras.ops.convert_to_numpy(augment(x, training=True))
    assert not np.allclose(shifted, x)

    trainer = DistillationTrainer(student, Distillation("teacher", 4.0, 1.0), teacher=teacher, augment=augment)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # weights stay put
    logs = trainer.train_on_batch(x, y, return_dict=True)

    on_shifted = float(soft_target_loss(teacher(shifted), student(shifted), 4.0))
    on_plain = float(soft_target_loss(teacher(x), student(x), 4.0))
    assert logs["soft_loss"] == pytest.approx(on_shifted, rel=1e-5)
    assert abs(on_shifted - on_plain) > 1e-3
    assert not teacher.trainable


def test_augmented_training_is_reproducible(raw_params):
    raw_params["augmentations"]["shift"] = [
        {"class_name": "RandomTranslation", "config": {"height_factor": 0.25, "width_factor": 0.25}}
    ]
    spec = small_spec(raw_params, "teacher", augmentation="shift", epochs=2)
    train, validation = toy_splits()
    weights = []
    for _ in range(2):
        seed_everything(0)
        model = build_model(spec, (4, 4, 1), 3)
        fit(model, spec, train, validation, seed=0)
        weights.append(model.get_weights())
    for first, second in zip(weights[0], weights[1], strict=True):
        np.testing.assert_array_equal(first, second)


def test_a_schedule_decays_over_the_whole_run_from_the_optimizers_rate(raw_params):
    from kd.models import build_optimizer

    spec = small_spec(raw_params, "teacher", schedule="cosine", epochs=3)
    import keras

    config = build_optimizer(spec, steps_per_epoch=10).get_config()["learning_rate"]
    assert config["config"]["decay_steps"] == 30 and config["config"]["initial_learning_rate"] == 0.001
    schedule = keras.optimizers.schedules.deserialize(config)
    assert float(schedule(0)) == pytest.approx(0.001)
    assert float(schedule(15)) == pytest.approx(0.0005)
    assert float(schedule(30)) == pytest.approx(0.0)


def test_keep_best_restores_the_epoch_best_on_validation():
    import keras

    from kd.training import KeepBestEpoch

    student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="student")

    class Wrapper:  # what the callback reads from the trainer
        pass

    keep = KeepBestEpoch("student")
    keep.set_model(Wrapper())
    keep.model.student = student
    history = [(0.90, 0.30), (0.95, 0.20), (0.95, 0.10), (0.93, 0.05)]  # epoch 3: best accuracy, lower loss
    for epoch, (accuracy, loss) in enumerate(history):
        student.set_weights([np.full((2, 1), float(epoch)), np.zeros(1)])
        keep.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
    keep.on_train_end()
    np.testing.assert_array_equal(student.get_weights()[0], np.full((2, 1), 2.0))
