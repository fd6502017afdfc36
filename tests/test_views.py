"""Views: the teacher's outputs on seeded augmented views, computed once; a student on views sees
exactly the images the teacher judged, one view per image per epoch, and bad views settings are
refused naming the key. End to end through `dvc repro` in tests/test_pipeline.py."""

import json

import numpy as np
import pytest

from conftest import set_keys
from kd.artifacts import load_model, save_model
from kd.data import save_split
from kd.errors import ArtifactError, ParamsError
from kd.models import build_model, check_models
from kd.params import parse_params
from kd.teachers import load_teachers
from kd.seeding import seed_everything
from kd.views import ViewInputs, compute_views

TINY = [{"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16, "activation": "relu", "name": "hidden"}}]


def views_params(raw, **views_entry):
    raw["architectures"]["tiny"] = TINY
    raw["train"] = {"teacher": {"architecture": "tiny", "epochs": 1, "batch_size": 32}}
    raw["distill"] = {}
    raw["views"] = {"tj": {"teacher": "teacher", "augmentation": "jitter", "count": 4, **views_entry}}
    raw["distill_views"] = {"student": {"architecture": "tiny", "views": "tj", "temperature": 4.0,
                                        "soft_target_weight": 0.5, "epochs": 4, "batch_size": 16}}
    raw["export"]["models"] = []
    return raw


@pytest.fixture
def computed(tmp_path, raw_params):
    """A toy split, a teacher file and its views (with mixup and a cached layer)."""
    params = parse_params(views_params(raw_params, mixup=0.5, layers=["hidden"]))
    rng = np.random.default_rng(0)
    train = save_split(tmp_path / "data" / "train", rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
                       rng.integers(0, 3, 40), 3)
    seed_everything(0)
    save_model(build_model(params.model("teacher"), (8, 8, 1), 3), tmp_path / "models" / "teacher.keras")
    folder = tmp_path / "logits" / "views" / "tj"
    folder.mkdir(parents=True)
    teacher = load_model(tmp_path / "models" / "teacher.keras")
    compute_views(params.views["tj"], teacher, train, folder, 0, tmp_path / "models" / "teacher.keras")
    return params, train, teacher, tmp_path


def test_a_student_rebuilds_exactly_the_views_the_teacher_judged(computed):
    params, train, teacher, root = computed
    from kd.batches import training_batches
    from kd.inspection import feature_layers

    spec = params.model("student")
    teachers = load_teachers(spec, root / "models", root / "logits", len(train), 3, train, 0)
    assert "views 'tj' (4 per image, mixed up with α=0.5)" in teachers.reason
    rebuild = ViewInputs(spec.views, train.image_shape, 0)
    extractor = feature_layers(teacher, ["hidden"], "test", "teacher")
    seen = []
    for inputs, (labels, cached) in training_batches(train, batch_size=16, shuffle_seed=0,
                                                     views=teachers.views, epochs=4):
        images, (partner_labels, lam) = rebuild(inputs, inputs["images"])
        outputs = extractor(images, training=False)
        np.testing.assert_allclose(outputs["logits"], cached["logits"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs["hidden"], cached["hidden"], rtol=1e-5, atol=1e-6)
        assert 0 <= float(np.min(lam)) and float(np.max(lam)) <= 1 and partner_labels.shape == labels.shape
        seen.append(labels.numpy())
    assert len(seen) == 4 * 3  # 40 images in batches of 16, four epochs in one stream
    # Each image once per epoch, as a different view in each of the 4 (= count) epochs.
    views = teachers.views
    shown = np.stack([views.rows(np.arange(40), epoch) for epoch in range(4)])
    assert all(len(set(shown[:, image])) == 4 for image in range(40))
    np.testing.assert_array_equal(shown // 4, np.tile(np.arange(40), (4, 1)))


def test_views_are_byte_stable(computed, tmp_path):
    params, train, teacher, root = computed
    again = tmp_path / "again"
    again.mkdir()
    compute_views(params.views["tj"], teacher, train, again, 0, root / "models" / "teacher.keras")
    first = sorted((root / "logits" / "views" / "tj").rglob("*.*"))
    assert [p.name for p in first] == [p.name for p in sorted(again.rglob("*.*"))]
    for path in first:
        assert path.read_bytes() == (again / path.relative_to(root / "logits" / "views" / "tj")).read_bytes(), path


def test_stale_views_are_refused_naming_the_folder(computed):
    params, train, teacher, root = computed
    spec = params.model("student")
    seed_everything(1)
    save_model(build_model(params.model("teacher"), (8, 8, 1), 3), root / "models" / "teacher.keras")  # retrained
    with pytest.raises(ArtifactError, match=r"views .*logits/views/tj/ were computed from another version of "
                                            r".*teacher.keras; rerun its stage \(dvc repro views@tj\)"):
        load_teachers(spec, root / "models", root / "logits", len(train), 3, train, 0)
    other = parse_params(set_keys(views_params(__import__("yaml").safe_load(open("params.yaml")), mixup=0.5,
                                               layers=["hidden"]), {"views.tj.count": 5}))
    with pytest.raises(ArtifactError, match=r"were computed with another count than params.yaml's views.tj gives"):
        load_teachers(other.model("student"), root / "models", root / "logits", len(train), 3, train, 0)
    description = json.loads((root / "logits" / "views" / "tj" / "views.json").read_text())
    assert description["teacher"] == "teacher" and description["count"] == 4


@pytest.mark.parametrize("updates, message", [
    ({"views.tj.count": 0}, "views.tj.count: expected an integer >= 1, found 0"),
    ({"views.tj.mixup": 0}, "views.tj.mixup: expected α > 0"),
    ({"views.tj.teacher": "nobody"}, "views.tj.teacher: 'nobody' is not a model"),
    ({"views.tj.augmentation": "nothing"}, "views.tj.augmentation: 'nothing' is not in augmentations"),
    ({"distill_views.student.views": "other"}, "distill_views.student.views: 'other' is not in views"),
    ({"distill_views.student.teacher": "student_scratch"},
     "distill_views.student.teacher: 'student_scratch', but views 'tj' are of teacher 'teacher'"),
    ({"distill_views.student.augmentation": "jitter"}, "distill_views.student: unknown key(s) augmentation"),
    ({"distill_views.student.loss": {"kind": "hint", "student_layer": "hidden", "teacher_layer": "hidden"}},
     "'hidden' is not cached with views 'tj'; add it to views.tj.layers"),
    ({"views.tj.mixup": 0.2, "distill_views.student.loss": "dkd"}, "dkd separates the target class"),
])
def test_bad_views_settings_are_refused_naming_the_key(raw_params, updates, message):
    raw = views_params(raw_params)
    raw["train"]["student_scratch"] = {"architecture": "tiny"}
    with pytest.raises(ParamsError) as error:
        parse_params(set_keys(raw, updates))
    assert message in str(error.value)


def test_an_augmentation_with_no_stateless_form_is_refused_before_any_work(raw_params):
    raw = views_params(raw_params)
    raw["augmentations"]["noise"] = [{"class_name": "GaussianNoise", "config": {"stddev": 0.1}}]
    params = parse_params(set_keys(raw, {"views.tj.augmentation": "noise"}))
    with pytest.raises(ParamsError, match=r"views.tj.augmentation \(noise\), layer 0 \(GaussianNoise\): has no "
                                          r"stateless form"):
        check_models(params, (8, 8, 1), 3)


# ---------------------------------------------------------------------------------------------- disk and kills

def npy_data_bytes(path):
    with open(path, "rb") as file:
        major, _ = np.lib.format.read_magic(file)
        (np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0)(file)
        return path.stat().st_size - file.tell()


def test_the_size_checked_is_what_the_views_take(computed):
    """view_bytes (what the disk check counts) is exactly the arrays compute_views writes."""
    from kd.views import view_bytes

    params, train, teacher, root = computed
    written = sum(npy_data_bytes(path) for path in (root / "logits" / "views" / "tj").rglob("*.npy"))
    shapes = {"hidden": teacher.get_layer("hidden").output.shape[1:]}
    assert written == len(train) * 4 * view_bytes(params.views["tj"], train.image_shape, 3, shapes)


def stage(script, *args, cwd):
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, capture_output=True,
                          text=True)


def write_params(path, raw):
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_views_that_cannot_fit_on_the_disk_are_refused_by_prepare_and_their_stage(computed, raw_params):
    """A careless count (10¹² views of each image) is refused up front, naming the key, the size and the room."""
    _, train, _, root = computed
    raw = views_params(raw_params, layers=["hidden"])
    raw["views"]["tj"]["count"] = 10 ** 12
    raw["data"]["limit"] = 200
    params = write_params(root / "big.yaml", raw)
    result = stage("prepare.py", "--params", params, "--out", str(root / "fresh"), "--logits", str(root / "out"),
                   cwd=root)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # A view: MNIST's 10 logits and the 16 floats of layer hidden (float32), the translation drawn (2 floats).
    assert (f"error: views.tj.count: {root}/out/views/tj/ has " in result.stderr
            and " free; caching 1,000,000,000,000 views of each of 180 training images (112 bytes a view) needs "
                "20,160.0 TB; nothing was written" in result.stderr), result.stderr
    assert not (root / "fresh").exists() and not (root / "out").exists()
    result = stage("views.py", "tj", "--params", params, "--data", str(root / "data"), "--models",
                   str(root / "models"), "--logits", str(root / "out"), "--timings", str(root / "timings"), cwd=root)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # Here the toy split: 40 images, 3 classes.
    assert (" free; caching 1,000,000,000,000 views of each of 40 training images (84 bytes a view) needs 3,360.0 TB; "
            "nothing was written" in result.stderr), result.stderr
    assert not (root / "out").exists() and not (root / "timings").exists()


def tree(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_views_stage_killed_mid_write_leaves_nothing_and_its_rerun_writes_the_same_bytes(computed, raw_params):
    """SIGKILL (no chance to clean up) while the views are being written: logits/views/tj/ does not appear;
    the rerun removes what the killed run left beside it and writes what an undisturbed run writes."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    _, _, _, root = computed
    params = write_params(root / "many.yaml", set_keys(views_params(raw_params, mixup=0.5, layers=["hidden"]),
                                                      {"views.tj.count": 4000}))  # 160,000 views: seconds

    def arguments(logits):
        return ["tj", "--params", params, "--data", str(root / "data"), "--models", str(root / "models"),
                "--logits", str(root / logits), "--timings", str(root / "timings")]

    process = subprocess.Popen([sys.executable, str(ROOT / "stages" / "views.py"), *arguments("killed")], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((root / "killed" / "views").glob(".tmp-*-tj/logits.npy")):  # the first block is written
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the stage ended before it was killed: give it more views"
    assert [path.name for path in (root / "killed" / "views").iterdir()] == [f".tmp-{process.pid}-tj"]  # no tj/

    rerun = stage("views.py", *arguments("killed"), cwd=root)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [path.name for path in (root / "killed" / "views").iterdir()] == ["tj"]  # the orphan removed
    undisturbed = stage("views.py", *arguments("undisturbed"), cwd=root)
    assert undisturbed.returncode == 0, undisturbed.stderr[-3000:]
    written = tree(root / "killed" / "views" / "tj")
    assert "logits.npy" in written and "features/hidden.npy" in written and "mix.npy" in written
    assert written == tree(root / "undisturbed" / "views" / "tj")
