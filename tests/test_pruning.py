"""Removing a model from params.yaml removes what it left behind: files and dvc.lock entries."""

import yaml

from kd.params import parse_params
from kd.pruning import remove_stale


def test_the_outputs_and_lock_entries_of_removed_models_are_removed(raw_params, tmp_path):
    del raw_params["distill"]["student_direct"]
    raw_params["export"]["models"] = ["student"]
    params = parse_params(raw_params)
    for folder, names in (("models", ["teacher.keras", "student_direct.keras"]),
                          ("logits", ["teacher.npy", "student_direct.npy"]),
                          ("timings", ["train@teacher.json", "distill@student_direct.json", "evaluate.json",
                                       "distill@teacher.json"])):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_text("x")
    for folder in ("dvclive/teacher", "dvclive/student_direct", "exported/student", "exported/teacher"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "file").write_text("x")
    (tmp_path / "exported" / "README.md").write_text("kept")
    lock = {"schema": "2.0", "stages": {name: {"cmd": "x"} for name in
                                        ("prepare", "train@teacher", "distill@student_direct", "distill@teacher",
                                         "export@teacher", "export@student", "evaluate")}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))

    removed = remove_stale(params, *(tmp_path / f for f in ("models", "logits", "dvclive", "timings", "exported",
                                                            "dvc.lock")))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["dvc.lock", "dvclive/teacher/file", "exported/README.md", "exported/student/file",
                    "logits/teacher.npy", "models/teacher.keras", "timings/evaluate.json", "timings/train@teacher.json"]
    # distill@teacher: the teacher is still a model, but trained by train@teacher now
    assert list(yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]) == [
        "prepare", "train@teacher", "export@student", "evaluate"]
    assert len(removed) == 9


def test_nothing_is_removed_when_nothing_is_stale(raw_params, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "teacher.keras").write_text("x")
    assert remove_stale(parse_params(raw_params), tmp_path / "models", tmp_path / "logits", tmp_path / "dvclive",
                        tmp_path / "timings", tmp_path / "exported", tmp_path / "dvc.lock") == []
