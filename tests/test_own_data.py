"""Your own images and teacher, end to end through `dvc repro`: a folder of class folders under
sources/, a teacher trained elsewhere and saved to a file, a student distilled from it. Replacing
the teacher file reruns its stage and its students only; changing the data reruns from prepare."""

import json

import pytest

from test_data import write_images
from test_pipeline import commit, copy_project, run, set_params, stages_run
from test_pretrained import functional_teacher

STUDENT = {"architecture": "fc_student", "teacher": "mine", "temperature": 4.0, "soft_target_weight": 0.5}
OWN = {
    "data.source": "sources/pets",
    "data.images": {"size": [16, 16], "color_mode": "rgb", "test_fraction": 0.25},
    "data.validation_fraction": 0.2,
    "training.epochs": 1,
    "pretrained": {"mine": {"path": "teachers/mine.keras", "outputs": "probabilities"}},
    "train": {"student_scratch": {"architecture": "fc_student"}},
    "distill": {"student": STUDENT},
    "export.models": ["student"],
    "evaluate.latency_repeats": 5,
    "evaluate.throughput_repeats": 2,
}


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    repo = tmp_path_factory.mktemp("own") / "repo"
    repo.mkdir(parents=True)
    write_images(repo / "sources" / "pets", ["cat", "dog", "fox"], count=12, size=(16, 16))
    (repo / "teachers").mkdir()
    functional_teacher(repo / "teachers" / "mine.keras", classes=3, shape=(16, 16, 3), softmax=True)
    return copy_project(repo, OWN)


def test_your_images_and_your_teacher_end_to_end(own):
    first = run(["dvc", "repro"], own)
    everything = sorted(["prepare", "pretrained@mine", "train@student_scratch", "distill@student", "export@student",
                         "evaluate"])
    assert stages_run(first) == everything
    assert "mine: teachers/mine.keras, " in first and "(final softmax removed: logits)" in first
    report = json.loads((own / "reports" / "comparison.json").read_text())
    assert report["data"]["classes"] == ["cat", "dog", "fox"]
    assert report["models"]["mine"]["architecture"] == "file teachers/mine.keras"
    assert report["models"]["mine"]["flops"] > 0 and report["models"]["student"]["teacher"] == "mine"
    assert "| mine |" in (own / "reports" / "comparison.md").read_text()
    commit(own, "first run")

    # A new teacher file: its stage and its student rerun, not prepare or the scratch control.
    functional_teacher(own / "teachers" / "mine.keras", classes=3, shape=(16, 16, 3), softmax=True)
    assert stages_run(run(["dvc", "repro"], own)) == ["distill@student", "evaluate", "export@student",
                                                      "pretrained@mine"]
    commit(own, "new teacher")

    # A file in sources/ that the data does not use: prepare reruns, writes the same bytes, nothing else runs.
    (own / "sources" / "notes.txt").write_text("where the pets came from\n")
    assert stages_run(run(["dvc", "repro"], own)) == ["prepare"]
    commit(own, "notes")

    # One image changed in place: the data moved, so everything after prepare reruns.
    image = sorted((own / "sources" / "pets" / "dog").glob("*.png"))[0]
    write_images(own / "tmp_images", ["x"], count=1, size=(16, 16), seed=7)
    image.write_bytes(next((own / "tmp_images" / "x").glob("*.png")).read_bytes())
    changed = stages_run(run(["dvc", "repro"], own))
    assert changed == everything
    assert "up to date" in run(["dvc", "status"], own)
