import pytest

from kd.errors import ParamsError
from kd.params import load_params, parse_params

from conftest import ROOT


def test_default_params_give_the_five_models_and_their_chain():
    params = load_params(ROOT / "params.yaml")
    assert list(params.models) == ["teacher", "student_scratch", "ta", "student", "student_direct"]
    assert params.model("teacher").teacher is None
    assert params.model("ta").teacher == "teacher"
    assert params.model("student").teacher == "ta"
    assert params.model("student_direct").teacher == "teacher"
    student = params.model("student")
    assert (student.epochs, student.batch_size) == (12, 256)
    assert student.distillation.temperature == 4.0
    assert student.distillation.soft_target_weight == 0.5
    assert student.optimizer == {"class_name": "Adam", "config": {"learning_rate": 0.001}}


def test_a_model_overrides_training_defaults(raw_params):
    raw_params["distill"]["student"]["epochs"] = 3
    params = parse_params(raw_params)
    assert params.model("student").epochs == 3
    assert params.model("ta").epochs == 12


def test_by_default_nothing_is_augmented_scheduled_or_online():
    for spec in load_params(ROOT / "params.yaml").models.values():
        assert (spec.augmentation, spec.schedule, spec.keep, spec.online_teacher) == ((), None, "last", False)


def test_a_distilled_model_on_augmented_inputs_learns_from_its_teacher_online(raw_params):
    raw_params["distill"]["student"].update(augmentation="jitter", schedule="cosine", keep="best")
    raw_params["train"]["teacher"]["augmentation"] = "jitter"
    params = parse_params(raw_params)
    student = params.model("student")
    assert student.online_teacher and student.augmentation[0]["class_name"] == "RandomTranslation"
    assert student.schedule["class_name"] == "CosineDecay" and student.keep == "best"
    # An augmented teacher still hands cached logits to students that see plain images.
    assert not params.model("ta").online_teacher and not params.model("teacher").online_teacher


def test_dropping_the_ta_is_a_params_edit(raw_params):
    del raw_params["distill"]["ta"]
    raw_params["distill"]["student"]["teacher"] = "teacher"
    with pytest.raises(ParamsError, match=r"export.models: 'ta' is not a model"):
        parse_params(raw_params)  # it is shipped too: say whether it still should be
    raw_params["export"]["models"] = ["student", "teacher"]
    assert parse_params(raw_params).model("student").teacher == "teacher"


def break_params(raw, edit):
    edit(raw)
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    return str(error.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p["distill"]["student"].update(temprature=2), "distill.student: unknown key(s) temprature"),
        (lambda p: p["data"].update(shuffle=True), "data: unknown key(s) shuffle"),
        (lambda p: p.update(sede=1), "params.yaml: unknown key(s) sede"),
        (lambda p: p["training"].update(epochs="12"), "training.epochs: expected an integer >= 1, found '12'"),
        (lambda p: p["training"].update(epochs=0), "training.epochs: expected an integer >= 1, found 0"),
        (lambda p: p["distill"]["ta"].update(batch_size=0), "distill.ta.batch_size: expected an integer >= 1"),
        (lambda p: p["distill"]["ta"].update(soft_target_weight=1.5), "distill.ta.soft_target_weight: expected a number in [0, 1], found 1.5"),
        (lambda p: p["distill"]["ta"].update(soft_target_weight=-0.1), "distill.ta.soft_target_weight: expected a number in [0, 1]"),
        (lambda p: p["distill"]["ta"].update(temperature=0), "distill.ta.temperature: expected a number > 0, found 0"),
        (lambda p: p["distill"]["ta"].update(temperature="hot"), "distill.ta.temperature: expected a number, found 'hot'"),
        (lambda p: p["distill"]["student"].update(teacher="professor"), "distill.student.teacher: 'professor' is not a model"),
        (lambda p: p["distill"]["student"].pop("temperature"), "distill.student: missing key temperature (give it here, or for every distilled model in training:)"),
        (lambda p: p["distill"]["student"].update(architecture="mlp"), "distill.student.architecture: 'mlp' is not in architectures"),
        (lambda p: p["training"].update(distribution="tpu"), "training.distribution: expected one of auto, default, mirrored, multi_worker, found 'tpu'"),
        (lambda p: p["distill"]["ta"].update(precision="float8"), "distill.ta.precision: expected one of auto, float32, mixed_float16, mixed_bfloat16"),
        (lambda p: p["data"].update(validation_fraction=1), "data.validation_fraction: expected a number in (0, 1)"),
        (lambda p: p["data"].update(limit=-5), "data.limit: expected an integer >= 2, found -5"),
        (lambda p: p.update(seed=True), "seed: expected an integer >= 0, found True"),
        (lambda p: p["train"].update(ta={"architecture": "ta_cnn"}), "distill.ta: model 'ta' is defined twice (in train, distill or pretrained)"),
        (lambda p: p["architectures"]["fc_student"].append({"config": {}}), "architectures.fc_student[3]: missing key(s) class_name"),
        (lambda p: p["distill"]["student"].update(augmentation="jiter"), "distill.student.augmentation: 'jiter' is not in augmentations (known: jitter); null for none"),
        (lambda p: p["training"].update(schedule="linear"), "training.schedule: 'linear' is not in schedules (known: cosine)"),
        (lambda p: p["training"].update(keep="first"), "training.keep: expected one of last, best, found 'first'"),
        (lambda p: p["augmentations"].update(flip={"class_name": "RandomFlip"}), "augmentations.flip: expected a list of layer configs, found dict"),
        (lambda p: p["schedules"]["cosine"].update(config=[1]), "schedules.cosine.config: expected a mapping, found list"),
        (lambda p: p["training"].pop("keep"), "training: missing key(s) keep"),
    ],
)
def test_bad_params_are_refused_with_the_key_named(raw_params, edit, expected):
    assert expected in break_params(raw_params, edit)


def test_a_cycle_in_the_chain_is_refused(raw_params):
    def make_cycle(p):
        p["distill"]["ta"]["teacher"] = "student"

    message = break_params(raw_params, make_cycle)
    assert "cycle" in message and "ta -> student -> ta" in message


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ParamsError, match="cannot read params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(unsafe)


def test_a_loss_is_declared_per_model_or_in_training(raw_params):
    raw_params["training"]["loss"] = {"kind": "dkd", "beta": 4}
    raw_params["distill"]["student"]["loss"] = [
        {"kind": "hinton", "standardize": True},
        {"kind": "hint", "student_layer": "dense_1", "teacher_layer": "dense", "weight": 50},
    ]
    raw_params["distill"]["student"]["teacher"] = "teacher"
    params = parse_params(raw_params)
    ((term, weight),) = params.model("ta").distillation.loss
    assert (term.name, term.config["beta"], term.temperature, weight) == ("dkd", 4, 4.0, 1.0)
    student = params.model("student")
    assert [(t.name, w) for t, w in student.distillation.loss] == [("hinton", 1.0), ("hint", 50.0)]
    assert student.online_teacher  # the hint reads the teacher's layer: cached logits cannot serve
    assert not params.model("ta").online_teacher


def test_several_teachers_come_from_the_chain_above_the_teacher(raw_params):
    raw_params["distill"]["student"].update(teachers={"ta": 1, "teacher": 3}, dense=True, drop=1)
    distillation = parse_params(raw_params).model("student").distillation
    assert distillation.teachers == (("ta", 1.0), ("teacher", 3.0)) and distillation.dense and distillation.drop == 1
    raw_params["distill"]["student"].update(teachers=["teacher", "ta"], dense=False, drop=0)
    assert parse_params(raw_params).model("student").distillation.teachers == (("ta", 1.0), ("teacher", 1.0))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r["distill"]["student"].update(teachers=["ta", "student_scratch"]),
         "distill.student.teachers: 'student_scratch' is not above 'ta' in its teacher chain (ta -> teacher); "
         "dvc.yaml gives a stage one teacher edge"),
        (lambda r: r["distill"]["student"].update(teachers=["teacher"]),
         "distill.student.teachers: teacher does not include the model's teacher 'ta'"),
        (lambda r: r["distill"]["student"].update(teachers={"ta": 0, "teacher": 0}),
         "distill.student.teachers: every teacher has weight 0"),
        (lambda r: r["distill"]["student"].update(teachers={"ta": -1, "teacher": 1}),
         "distill.student.teachers.ta: expected a weight >= 0, found -1"),
        (lambda r: r["distill"]["student"].update(teachers=["ta", "teacher"], drop=1),
         "distill.student.drop: 1 needs dense: true and fewer than the 2 teacher(s)"),
        (lambda r: r["distill"]["student"].update(teachers=["ta", "teacher"], dense=True, drop=2),
         "distill.student.drop: 2 needs dense: true and fewer than the 2 teacher(s)"),
        (lambda r: r["distill"]["student"].update(loss={"kind": "hint", "student_layer": "h1", "teacher_layer": "dense"}),
         "distill.student.loss.student_layer: 'h1' is not a layer of architecture fc_student (model 'student'); "
         "its layers: flatten, dense, dense_1, logits (name a layer with `name` in its config)"),
        (lambda r: r["distill"]["student"].update(loss={"kind": "rkd", "student_layer": "dense", "teacher_layer": "conv"}),
         "distill.student.loss.teacher_layer: 'conv' is not a layer of architecture ta_cnn (model 'ta'); its layers: "
         "conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, flatten, dropout, dense, dropout_1, logits"),
        (lambda r: r["distill"]["student"].update(loss="dkdd"),
         "distill.student.loss.kind: unknown kind 'dkdd'; expected one of hinton, dkd, dist, hint, attention, rkd"),
        (lambda r: r["training"].update(loss={"kind": "dist", "tau": 4}),
         "training.loss: unknown option(s) tau of kind 'dist'; expected temperature, beta, gamma"),
        (lambda r: r["train"]["teacher"].update(loss="dkd"),
         "train.teacher: unknown key(s) loss"),
    ],
)
def test_bad_losses_and_teacher_lists_are_refused_naming_the_key(raw_params, edit, expected):
    assert expected in break_params(raw_params, edit)


def test_temperature_and_soft_target_weight_may_come_from_training(raw_params):
    """Like every training key: a distilled model without them takes training:'s, its own win."""
    for name in ("ta", "student", "student_direct"):
        del raw_params["distill"][name]["temperature"], raw_params["distill"][name]["soft_target_weight"]
    raw_params["training"].update(temperature=2.0, soft_target_weight=0.7)
    raw_params["distill"]["ta"]["temperature"] = 5.0
    params = parse_params(raw_params)
    assert (params.model("student").distillation.temperature, params.model("student").distillation.soft_target_weight) \
        == (2.0, 0.7)
    assert params.model("ta").distillation.temperature == 5.0
    raw_params["training"]["soft_target_weight"] = 2
    with pytest.raises(ParamsError, match=r"training.soft_target_weight: expected a number in \[0, 1\], found 2.0"):
        parse_params(raw_params)
