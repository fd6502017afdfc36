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


def with_views_and_peers(raw):
    """The default params with a views entry, a student on it, and a mutual group of two peers."""
    raw["views"] = {"vj": {"teacher": "teacher", "augmentation": "jitter", "count": 4}}
    raw["distill_views"] = {"sv": {"architecture": "fc_student", "views": "vj", "temperature": 4.0,
                                   "soft_target_weight": 0.5}}
    raw["mutual"] = {"pair": {"temperature": 1.0, "soft_target_weight": 0.5}}
    raw["peers"] = {name: {"architecture": "fc_student", "group": "pair"} for name in ("peer_a", "peer_b")}
    return raw


def test_views_distill_views_mutual_and_peers_entries_parse(raw_params):
    params = parse_params(with_views_and_peers(raw_params))
    assert params.views["vj"].count == 4 and params.model("sv").views is params.views["vj"]
    assert params.mutual["pair"].peers == ("peer_a", "peer_b")


NAN, INF = float("nan"), float("inf")
BORN = {"architecture": "fc_student", "teacher": "student_scratch", "temperature": 4.0, "soft_target_weight": 0.5,
        "generations": 2}
MODEL_NAMES = "expected one of tensorflow, jax, torch"


@pytest.mark.parametrize("updates, expected", [
    # A distilled model's temperature, named as written (not as the loss term that inherits it).
    *[({"distill.student.temperature": value}, f"distill.student.temperature: expected a number > 0, found {shown}")
      for value, shown in ((NAN, "nan"), (INF, "inf"), (-1, "-1.0"))],
    ({"distill.student.temperature": True}, "distill.student.temperature: expected a number, found True"),
    # views:
    *[({"views.vj.count": value}, f"views.vj.count: expected an integer >= 1, found {shown}")
      for value, shown in ((NAN, "nan"), (INF, "inf"), (-3, "-3"), (True, "True"), ("4", "'4'"), (2.5, "2.5"))],
    *[({"views.vj.mixup": value}, f"views.vj.mixup: expected α > 0 (mixing coefficients from Beta(α, α)) or null "
                                  f"for no mixing, found {shown}") for value, shown in ((NAN, "nan"), (INF, "inf"), (-1, "-1.0"))],
    ({"views.vj.mixup": True}, "views.vj.mixup: expected a number, found True"),
    ({"views.vj.mixup": "strong"}, "views.vj.mixup: expected a number, found 'strong'"),
    ({"views.vj.teacher": 3}, "views.vj.teacher: expected a model name, found 3"),
    ({"views.vj.teacher": "professor"}, "views.vj.teacher: 'professor' is not a model"),
    ({"views.vj.augmentation": True}, "views.vj.augmentation: True is not in augmentations (known: jitter)"),
    ({"views.vj.layers": "dense"}, "views.vj.layers: expected a list of the teacher's layer names, found 'dense'"),
    ({"views.vj.layers": ["dense", "dense"]}, "views.vj.layers: 'dense' listed twice"),
    # distill_views:
    *[({f"distill_views.sv.{key}": value}, f"distill_views.sv.{key}: expected {what}, found {shown}")
      for key, what in (("temperature", "a number > 0"), ("soft_target_weight", "a number in [0, 1]"))
      for value, shown in ((NAN, "nan"), (INF, "inf"), (-1, "-1.0"))],
    *[({"distill_views.sv.epochs": value}, f"distill_views.sv.epochs: expected an integer >= 1, found {shown}")
      for value, shown in ((NAN, "nan"), (0, "0"), (False, "False"), ("3", "'3'"))],
    ({"distill_views.sv.views": 3}, "distill_views.sv.views: 3 is not in views (known: vj)"),
    ({"distill_views.sv.architecture": "mlp"}, "distill_views.sv.architecture: 'mlp' is not in architectures"),
    ({"distill_views.sv.backend": "mxnet"}, f"distill_views.sv.backend: {MODEL_NAMES}, found 'mxnet'"),
    # mutual: (each setting named as the group wrote it, not as training:'s)
    *[({f"mutual.pair.{key}": value}, f"mutual.pair.{key}: expected {what}, found {shown}")
      for key, what in (("temperature", "a number > 0"), ("soft_target_weight", "a number in [0, 1]"))
      for value, shown in ((NAN, "nan"), (INF, "inf"), (-1, "-1.0"))],
    ({"mutual.pair.temperature": "warm"}, "mutual.pair.temperature: expected a number, found 'warm'"),
    *[({f"mutual.pair.{key}": value}, f"mutual.pair.{key}: expected an integer >= 1, found {shown}")
      for key in ("epochs", "batch_size") for value, shown in ((NAN, "nan"), (0, "0"), (True, "True"), ("8", "'8'"))],
    ({"mutual.pair.backend": "mxnet"}, f"mutual.pair.backend: {MODEL_NAMES}, found 'mxnet'"),
    ({"mutual.pair.precision": "float8"}, "mutual.pair.precision: expected one of auto, float32"),
    ({"mutual.pair.augmentation": "jiter"}, "mutual.pair.augmentation: 'jiter' is not in augmentations"),
    ({"mutual.pair.schedule": "linear"}, "mutual.pair.schedule: 'linear' is not in schedules"),
    ({"mutual.pair.optimizer": "adam"}, "mutual.pair.optimizer: expected a mapping, found str"),
    ({"mutual.pair.distribution": 3}, "mutual.pair.distribution: 3; peers train together in one process"),
    ({"mutual.pair": 5}, "mutual.pair: expected a mapping, found int"),
    ({"mutual": {"a pair": {"temperature": 1.0, "soft_target_weight": 0.5}}},
     "mutual.a pair: group names must start with a letter"),
    ({"mutual": {"../up": {"temperature": 1.0, "soft_target_weight": 0.5}}}, "mutual.../up: group names must"),
    # peers:
    ({"peers.peer_a.architecture": "mlp"}, "peers.peer_a.architecture: 'mlp' is not in architectures"),
    ({"peers.peer_a.group": 3}, "peers.peer_a.group: 3 is not a group of mutual: (known: pair)"),
    ({"peers.peer_a.epochs": 3}, "peers.peer_a: unknown key(s) epochs"),
    # generations: the count, then the entry as a distilled model's, named as written
    *[({"distill.born": {**BORN, "generations": value}},
       f"distill.born.generations: expected an integer from 1 to 100 (each generation is a model and a stage), "
       f"found {shown}") for value, shown in ((NAN, "nan"), (True, "True"), ("2", "'2'"), (10 ** 12, "1000000000000"))],
    ({"distill.born": {**BORN, "temperature": NAN}}, "distill.born.temperature: expected a number > 0, found nan"),
    ({"distill.born": {**BORN, "epochs": -1}}, "distill.born.epochs: expected an integer >= 1, found -1"),
    ({"distill.born": {**BORN, "teacher": "professor"}}, "distill.born.teacher: 'professor' is not a model"),
    ({"distill.born": {k: v for k, v in BORN.items() if k != "teacher"}}, "distill.born: missing key(s) teacher"),
    ({"distill.born": {**BORN, "ensemble": "yes"}}, "distill.born.ensemble: expected true or false, found 'yes'"),
])
def test_every_number_and_name_of_views_mutual_peers_and_generations_is_checked(raw_params, updates, expected):
    from conftest import set_keys

    assert expected in break_params(with_views_and_peers(raw_params), lambda raw: set_keys(raw, updates))


@pytest.mark.parametrize("text, expected", [
    ("seed: 0\nseed: 1\n", "seed: given twice in {path}, on lines 1 and 2; YAML would silently keep the last"),
    ("distill:\n  student:\n    temperature: 4.0\n    teacher: ta\n    temperature: 2.0\n",
     "distill.student.temperature: given twice in {path}, on lines 3 and 5"),
    ("architectures:\n  fc:\n    - {class_name: Dense, class_name: Flatten}\n",
     "architectures.fc[0].class_name: given twice in {path}, on lines 3 and 3"),
])
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert expected.format(path=path) in str(error.value)


def test_a_key_merged_from_an_anchor_may_be_overridden(tmp_path, default_params_raw):
    import yaml

    text = "x_defaults: &base {temperature: 4.0, soft_target_weight: 0.5}\n" + (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("  student_direct:", "  merged: {<<: *base, temperature: 2.0, architecture: fc_student, "
                                                      "teacher: teacher}\n  student_direct:", 1))
    with pytest.raises(ParamsError, match="params.yaml: unknown key.s. x_defaults"):  # merged fine; the anchor's key is not one
        load_params(path)
    assert yaml.safe_load(path.read_text())["distill"]["merged"]["temperature"] == 2.0
    assert load_params(ROOT / "params.yaml").models.keys() == parse_params(default_params_raw).models.keys()
