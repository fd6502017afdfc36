"""Online and self-distillation: peers that learn together (deep mutual learning), born-again
generations written into params.yaml, and their bad params refused naming the key. Through
`dvc repro` in tests/test_pipeline.py."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, set_keys
from kd.errors import ParamsError
from kd.params import parse_params
from test_training import toy_splits

TINY = [{"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16, "activation": "relu"}}]


def mutual_params(raw, peers=("peer_a", "peer_b"), **group):
    raw["architectures"]["tiny"] = TINY
    raw["mutual"] = {"pair": {"temperature": 1.0, "soft_target_weight": 0.5, "epochs": 12, "batch_size": 32, **group}}
    raw["peers"] = {name: {"architecture": "tiny", "group": "pair"} for name in peers}
    return raw


def test_peers_learn_from_the_labels_and_each_other(raw_params):
    import keras

    from kd.mutual import fit_group, peer_objective
    from kd.devices import training_scope

    params = parse_params(mutual_params(raw_params))
    group = params.mutual["pair"]
    specs = [params.model(name) for name in group.peers]
    assert [spec.stage for spec in specs] == ["peer@peer_a", "peer@peer_b"]
    assert specs[0].teacher is None and specs[0].mutual is group
    # Each peer's teachers are the others, averaged (here one other).
    assert peer_objective(group, "peer_a").teachers == (("peer_b", 1.0),)
    train, validation = toy_splits()
    with training_scope(specs[0]):
        peers = fit_group(group, specs, train, validation, seed=0)
    accuracy = [np.mean(keras.ops.convert_to_numpy(peer(validation.images[:])).argmax(1) == validation.y)
                for peer in peers]
    assert min(accuracy) > 0.9
    # Seeded per peer: peer_a starts from seed 0's weights, peer_b from seed 1's, so they differ.
    assert not np.array_equal(peers[0].get_weights()[0], peers[1].get_weights()[0])


def test_a_peer_is_pulled_towards_the_others_predictions(raw_params):
    """With soft_target_weight 1 the labels do not count: the peers only match each other."""
    import keras

    from kd.mutual import fit_group
    from kd.devices import training_scope

    params = parse_params(mutual_params(raw_params, soft_target_weight=1.0, temperature=1.0))
    group = params.mutual["pair"]
    specs = [params.model(name) for name in group.peers]
    train, validation = toy_splits()
    with training_scope(specs[0]):
        peers = fit_group(group, specs, train, validation, seed=0)
    from kd.models import build_model

    def probabilities(model):
        return keras.ops.convert_to_numpy(keras.ops.softmax(model(validation.images[:])))

    initial = []
    for index, spec in enumerate(specs):  # the peers as fit_group starts them: seed + index
        keras.utils.set_random_seed(index)
        initial.append(probabilities(build_model(spec, (4, 4, 1), 3)))
    after = [probabilities(peer) for peer in peers]
    assert np.abs(after[0] - after[1]).mean() < 0.5 * np.abs(initial[0] - initial[1]).mean()


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["peers"].pop("peer_b"), "mutual.pair: 1 peer(s) (peer_a) name this group in peers:; a group learns "
                                         "mutually with at least two"),
    (lambda p: p["peers"]["peer_b"].update(group="trio"), "peers.peer_b.group: 'trio' is not a group of mutual:"),
    (lambda p: p["peers"].update(teacher={"architecture": "tiny", "group": "pair"}),
     "peers.teacher: model 'teacher' is defined twice"),
    (lambda p: p["mutual"]["pair"].update(loss={"kind": "hint", "student_layer": "dense", "teacher_layer": "dense"}),
     "hint reads a teacher's layers; peers learn from each other's logits"),
    (lambda p: p["mutual"]["pair"].update(distribution="multi_worker"),
     "mutual.pair.distribution: 'multi_worker'; peers train together in one process"),
    (lambda p: p["mutual"]["pair"].update(keep="best"), "mutual.pair: unknown key(s) keep"),
    (lambda p: p["mutual"]["pair"].update(temperature=0), "mutual.pair.temperature: expected a number > 0, found 0.0"),
])
def test_bad_groups_are_refused_naming_the_key(raw_params, edit, message):
    raw = mutual_params(raw_params)
    edit(raw)
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert message in str(error.value)


@pytest.mark.parametrize("generations, message", [
    (0, "distill.born.generations: expected an integer from 1 to 100 (each generation is a model and a stage), "
        "found 0"),
    (2.5, "distill.born.generations: expected an integer from 1 to 100"),
    (2, "distill.born.generations: 2 generation(s) are 2 models, each a stage, and DVC makes one stage per params "
        "entry: run `make generations` to write born_g1, born_g2 into params.yaml"),
])
def test_generations_are_refused_until_written_as_entries(raw_params, generations, message):
    raw_params["distill"]["born"] = {"architecture": "fc_student", "teacher": "student_scratch", "temperature": 4.0,
                                     "soft_target_weight": 0.5, "generations": generations}
    with pytest.raises(ParamsError) as error:
        parse_params(raw_params)
    assert message in str(error.value)
    raw_params["distill"]["born"]["generations"] = 2
    raw_params["train"]["born_g2"] = {"architecture": "fc_student"}
    with pytest.raises(ParamsError, match="generation 'born_g2' would collide with model 'born_g2'"):
        parse_params(raw_params)
    del raw_params["train"]["born_g2"]
    raw_params["distill"]["born_g1"] = {"architecture": "fc_student", "teacher": "teacher"}  # a distill entry too
    with pytest.raises(ParamsError, match="generation 'born_g1' would collide with model 'born_g1'"):
        parse_params(raw_params)


def test_make_generations_writes_the_chain_into_params_keeping_the_file(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    born = ("  born: {architecture: fc_student, teacher: student_scratch, temperature: 4.0, soft_target_weight: 0.5, "
            "generations: 3, ensemble: true}\n")
    anchor = "  student_direct:"
    (tmp_path / "params.yaml").write_text(text.replace(anchor, born + anchor, 1))
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "generations.py"), "--params",
                             str(tmp_path / "params.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "distill.born → born_g1, born_g2, born_g3" in result.stdout
    written = (tmp_path / "params.yaml").read_text()
    # Everything else byte for byte: comments, layout, nulls.
    assert written.replace("  born_g1: {architecture: fc_student, teacher: student_scratch, temperature: 4.0, "
                           "soft_target_weight: 0.5}\n"
                           "  born_g2: {architecture: fc_student, teacher: born_g1, temperature: 4.0, "
                           "soft_target_weight: 0.5}\n"
                           "  born_g3: {architecture: fc_student, teacher: born_g2, temperature: 4.0, "
                           "soft_target_weight: 0.5, teachers: [born_g2, born_g1]}\n", "") == text
    params = parse_params(yaml.safe_load(written))
    assert [params.model(f"born_g{i}").teacher for i in (1, 2, 3)] == ["student_scratch", "born_g1", "born_g2"]
    assert params.model("born_g3").distillation.teachers == (("born_g2", 1.0), ("born_g1", 1.0))


def test_a_group_trains_its_peers_in_one_stage_and_each_is_published_as_a_model(tmp_path, raw_params):
    """stages/mutual.py then stages/peer.py on a toy split: the peer's files appear where any model's do."""
    raw = mutual_params(raw_params)
    raw["export"]["models"] = []
    raw["train"], raw["distill"] = {"scratch": {"architecture": "tiny"}}, {}  # models that fit 4x4 images
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(set_keys(raw, {"training.epochs": 1})))
    toy_splits(folder=tmp_path / "data")
    outputs = []
    for script, name in (("mutual.py", "pair"), ("peer.py", "peer_a"), ("peer.py", "peer_b")):
        result = subprocess.run([sys.executable, str(ROOT / "stages" / script), name], cwd=tmp_path,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout)
    for peer in ("peer_a", "peer_b"):
        assert (tmp_path / "models" / f"{peer}.keras").read_bytes() == \
            (tmp_path / "mutual" / "pair" / f"{peer}.keras").read_bytes()
        assert (tmp_path / "logits" / f"{peer}.npy").is_file()
        assert (tmp_path / "dvclive" / peer / "metrics.json").is_file()
    assert "mutual@pair: peers peer_a, peer_b learn together (T=1.0, soft_target_weight=0.5, loss hinton)" in outputs[0]
    assert "peer_a: published from mutual/pair/" in outputs[1]


def tree(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_group_killed_mid_training_leaves_nothing_and_its_rerun_writes_the_same_bytes(tmp_path, raw_params):
    """SIGKILL (no chance to clean up) in epoch 2: mutual/pair/ does not appear; the rerun removes what the
    killed run left beside it and writes, byte for byte, what an undisturbed run writes."""
    import signal
    import time

    raw = mutual_params(raw_params, epochs=40)
    raw["export"]["models"] = []
    raw["train"], raw["distill"] = {"scratch": {"architecture": "tiny"}}, {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    toy_splits(folder=tmp_path / "data")

    def arguments(out):
        return [sys.executable, str(ROOT / "stages" / "mutual.py"), "pair", "--out", str(tmp_path / out)]

    process = subprocess.Popen(arguments("killed"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline, seen = time.monotonic() + 120, []
    for line in process.stdout:  # wait until training is under way
        seen.append(line)
        if line.startswith("Epoch 2/") or time.monotonic() > deadline:
            break
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    assert [path.name for path in (tmp_path / "killed").iterdir()] == [f".tmp-{process.pid}-pair"]  # no pair/

    for out in ("killed", "undisturbed"):
        result = subprocess.run(arguments(out), cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    assert [path.name for path in (tmp_path / "killed").iterdir()] == ["pair"]  # the orphan removed
    written = tree(tmp_path / "killed" / "pair")
    assert {"peer_a.keras", "peer_b.npy", "curves/peer_a/metrics.json"} <= set(written)
    assert written == tree(tmp_path / "undisturbed" / "pair")
