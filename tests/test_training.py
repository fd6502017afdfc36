import numpy as np
import pytest

from kd.data import save_split
from kd.errors import ArtifactError, TrainingError
from kd.models import build_model
from kd.params import parse_params
from kd.teachers import Teachers, load_teachers
from kd.batches import predict_logits
from kd.losses.objective import Objective
from kd.seeding import seed_everything
from kd.training import fit


def toy_splits(n=256, classes=3, seed=0, folder=None):
    """Linearly separable 4x4 'images': the class sets which pixel block is bright (splits on disk)."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.random((n, 4, 4, 1)).astype(np.float32) * 0.2
    for c in range(classes):
        x[y == c, c, :, 0] += 1.0
    cut = n * 3 // 4
    folder = Path(folder or tempfile.mkdtemp(prefix="kd-toy-"))
    return (save_split(folder / "train", x[:cut], y[:cut], classes),
            save_split(folder / "validation", x[cut:], y[cut:], classes))


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
    history = fit(model, spec, train, validation, seed=0, teachers=Teachers(["ta"], logits=[teacher_logits]),
                  objective=Objective.of(spec.distillation))
    assert {"hard_loss", "soft_loss"} <= set(history.history)
    assert history.history["soft_loss"][-1] < history.history["soft_loss"][0]
    agreement = np.mean(predict_logits(model, train.images).argmax(1) == teacher_logits.argmax(1))
    assert agreement > 0.9


def test_logits_of_the_wrong_length_are_refused(raw_params, tmp_path):
    np.save(tmp_path / "ta.npy", np.zeros((10, 3), np.float32))  # the bytes kd.batches.write_logits writes
    spec = small_spec(raw_params, "student")
    with pytest.raises(ArtifactError, match=r"logits of teacher 'ta' have shape \(10, 3\) \(float32\); expected \(192, 3\)"):
        load_teachers(spec, tmp_path, tmp_path, 192, 3)


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
import yaml
from kd.models import build_model
from kd.params import parse_params
from kd.teachers import Teachers
from kd.devices import training_scope
from kd.losses.objective import Objective
from kd.seeding import seed_everything
from kd.training import fit
from test_training import small_spec, toy_splits

raw = yaml.safe_load(open(sys.argv[1]))
spec = small_spec(raw, "student", distribution="mirrored")
seed_everything(0)
train, validation = toy_splits()
teacher_logits = np.eye(3, dtype=np.float32)[train.y] * 5.0
with training_scope(spec):
    strategy = tf.distribute.get_strategy()
    model = build_model(spec, (4, 4, 1), 3)
    history = fit(model, spec, train, validation, seed=0, teachers=Teachers(["ta"], logits=[teacher_logits]),
                  objective=Objective.of(spec.distillation))
print("REPLICAS", strategy.num_replicas_in_sync, type(strategy).__name__)
print("LOSS", history.history["loss"][0], history.history["loss"][-1])
print("VAL_ACCURACY", history.history["val_accuracy"][-1])
"""


def test_a_distillation_step_learns_under_mirrored_strategy_on_two_cpu_devices():
    import subprocess
    import sys as _sys

    from conftest import ROOT, child_environment

    result = subprocess.run(
        [_sys.executable, "-c", MIRRORED_SCRIPT, str(ROOT / "params.yaml")], env=child_environment(),
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

    from kd.devices import training_scope

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

    from kd.losses.kinds import parse_loss
    from kd.losses.objective import Objective
    from kd.losses.terms import hinton
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

    objective = Objective(parse_loss("hinton", "loss", 4.0), 1.0, {"teacher": 1.0})
    trainer = DistillationTrainer(student, objective, Teachers(["teacher"], models=[teacher]),
                                  augment=augment)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # weights stay put
    logs = trainer.train_on_batch(x, y, return_dict=True)

    on_shifted = float(hinton(teacher(shifted), student(shifted), 4.0))
    on_plain = float(hinton(teacher(x), student(x), 4.0))
    assert logs["soft_loss"] == pytest.approx(on_shifted, rel=1e-5)
    assert abs(on_shifted - on_plain) > 1e-3


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


def test_feature_terms_train_online_and_their_regressor_is_not_part_of_the_student(raw_params, tmp_path):
    """hint (with a dense regressor), rkd and attention read layers of student and teacher."""
    import keras

    from kd.artifacts import load_model, save_model
    from kd.inspection import feature_layers

    raw_params["architectures"]["tiny_conv"] = [
        {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "padding": "same", "name": "maps"}},
        {"class_name": "Flatten"},
        {"class_name": "Dense", "config": {"units": 8, "activation": "relu", "name": "features"}},
    ]
    raw_params["train"]["teacher"].update(architecture="tiny_conv", epochs=5, batch_size=32)
    raw_params["distill"]["ta"]["architecture"] = "tiny_conv"
    teacher_spec = parse_params(raw_params).model("teacher")
    seed_everything(0)
    train, validation = toy_splits()
    teacher = build_model(teacher_spec, (4, 4, 1), 3)
    fit(teacher, teacher_spec, train, validation, seed=0)
    teacher.trainable = False

    for loss in (
        {"kind": "hint", "student_layer": "dense", "teacher_layer": "features", "weight": 1},  # 16 -> 8: dense regressor
        {"kind": "rkd", "student_layer": "dense", "teacher_layer": "features", "weight": 0.1},
        [{"kind": "hinton"}, {"kind": "attention", "student_layer": "maps", "teacher_layer": "maps"}],
    ):
        raw = {**raw_params, "distill": {"student": {**raw_params["distill"]["student"], "teacher": "teacher"}},
               "export": {"models": [], "representative_images": 1}}
        raw["architectures"]["student_conv"] = [
            {"class_name": "Conv2D", "config": {"filters": 2, "kernel_size": 3, "padding": "same", "name": "maps"}},
            {"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16, "activation": "relu"}}]
        spec = small_spec(raw, "student", loss=loss, architecture="student_conv")
        assert spec.online_teacher
        seed_everything(0)
        student = build_model(spec, (4, 4, 1), 3)
        layers = [n for term, _ in spec.distillation.loss if term.features for n in term.teacher_layers]
        teachers = Teachers(["teacher"], models=[feature_layers(teacher, layers, "loss", "teacher")])
        history = fit(student, spec, train, validation, seed=0, teachers=teachers, objective=Objective.of(spec.distillation))
        assert history.history["soft_loss"][-1] < history.history["soft_loss"][0], loss
        assert history.history["val_accuracy"][-1] > 0.5, loss  # chance: 1/3

    # The last student saved and loaded is just the student: the same weights as one built plainly.
    save_model(student, tmp_path / "student.keras")
    loaded = load_model(tmp_path / "student.keras")
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in build_model(spec, (4, 4, 1), 3).get_weights()]


def test_a_hint_that_no_regressor_can_bridge_is_refused_naming_both_shapes(raw_params):
    import keras

    from kd.errors import ParamsError
    from kd.losses.objective import Objective
    from kd.training import DistillationTrainer

    spec = small_spec(raw_params, "student", loss={"kind": "hint", "student_layer": "dense", "teacher_layer": "conv2d"})
    student = build_model(spec, (4, 4, 1), 3)
    inputs = keras.Input((4, 4, 1))
    maps = keras.layers.Conv2D(2, 3, name="conv2d")(inputs)
    teacher = keras.Model(inputs, {"logits": keras.layers.Dense(3)(keras.layers.Flatten()(maps)), "conv2d": maps})
    with pytest.raises(ParamsError, match=r"student layer 'dense' gives \(batch, 16\) and teacher layer 'conv2d' gives "
                                          r"\(batch, 2, 2, 2\); a regressor bridges channels"):
        DistillationTrainer(student, Objective.of(spec.distillation), Teachers(["ta"], models=[teacher]))


def test_layer_names_do_not_depend_on_what_else_the_process_built(raw_params):
    import keras

    from kd.models import layer_names

    spec = parse_params(raw_params).model("student")
    keras.layers.Dense(3)  # takes the name "dense" in this process...
    model = build_model(spec, (28, 28, 1), 10)
    assert [layer.name for layer in model.layers] == layer_names(spec.layers) == ["flatten", "dense", "dense_1", "logits"]


def test_non_finite_weights_stop_training_even_when_the_logged_loss_is_finite():
    import keras

    from kd.training import StopOnNonFiniteLoss

    student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")], name="student")
    student.set_weights([np.array([[np.nan], [1.0]], np.float32), np.zeros(1, np.float32)])

    class Wrapper:  # what the callback reads from the trainer
        pass

    guard = StopOnNonFiniteLoss("student")
    guard.set_model(Wrapper())
    guard.model.student = student
    with pytest.raises(TrainingError, match=r"model 'student': weights of student/dense/kernel became non-finite in epoch 3 "
                                            r"\(the loss was 0.25\)"):
        guard.on_epoch_end(2, {"loss": 0.25})


def test_auto_precision_is_float32_on_every_cpu(monkeypatch):
    """bfloat16 is opt-in: it cost accuracy over seeds, and a CPU-dependent default would
    give different models on different machines."""
    import kd.devices as devices

    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    assert devices.precision_policy("auto") == ("float32", "CPU")
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    assert devices.precision_policy("auto") == ("mixed_float16", "GPU")
    assert devices.precision_policy("mixed_bfloat16") == ("mixed_bfloat16", "params")


def test_a_model_trained_in_bfloat16_is_saved_as_a_float32_model(raw_params):
    from kd.models import float32_copy
    from kd.devices import training_scope

    seed_everything(0)
    train, validation = toy_splits()
    spec = small_spec(raw_params, "teacher", precision="mixed_bfloat16", epochs=2)
    with training_scope(spec) as setup:
        model = build_model(spec, (4, 4, 1), 3)
        fit(model, spec, train, validation, seed=0)
    assert setup["precision"] == "mixed_bfloat16" and model.layers[0].dtype_policy.name == "mixed_bfloat16"
    served = float32_copy(model, spec)
    assert {layer.dtype_policy.name for layer in served.layers} == {"float32"}
    for trained, copied in zip(model.get_weights(), served.get_weights(), strict=True):
        np.testing.assert_array_equal(trained, copied)
    assert predict_logits(served, validation.images).dtype == np.float32


def test_a_long_epoch_prints_progress_every_ten_seconds_and_a_short_one_none(monkeypatch, capsys):
    import kd.training as training

    clock = {"now": 0.0}
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock["now"])
    log = training.EpochLog(batch_size=64)
    log.set_params({"epochs": 1, "steps": 100})
    log.on_epoch_begin(0)
    for batch in range(100):  # 1 s a step: a 100 s epoch
        clock["now"] += 1.0
        log.on_train_batch_end(batch)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  step")]
    assert len(lines) == 9 and lines[0] == "  step 10/100 - 64 images/s - 90 s left in the epoch"
    log.on_epoch_begin(0)
    for batch in range(100):  # 0.2 s a step: a 20 s epoch prints nothing but its epoch line
        clock["now"] += 0.2
        log.on_train_batch_end(batch)
    assert "step" not in capsys.readouterr().out.replace("Epoch", "")


def test_part_means_equal_a_mean_per_part_weighted_by_batch_size_bit_for_bit():
    import keras

    from kd.training import PartMeans

    rng = np.random.default_rng(3)
    names = ("hard_loss", "soft_loss", "dist_inter")
    together = PartMeans(names)
    each = {name: keras.metrics.Mean(name=name) for name in names}
    for epoch in range(2):
        together.reset_state()
        for metric in each.values():
            metric.reset_state()
        for batch_size in (32, 32, 7):  # a short last batch weighs less
            parts = {name: np.float32(rng.random() * 10.0 ** rng.integers(-3, 3)) for name in names}
            together.update_state(parts, batch_size)
            for name, metric in each.items():
                metric.update_state(parts[name], sample_weight=batch_size)
        result = together.result()
        assert list(result) == list(names)
        for name in names:
            assert np.float32(result[name]).tobytes() == np.float32(each[name].result()).tobytes()
