"""training.distribution: multi_worker: two worker processes on 127.0.0.1 train one model with
MultiWorkerMirroredStrategy from TF_CONFIG; a missing or malformed TF_CONFIG is refused first."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, child_environment
from kd.devices import tf_config
from kd.errors import ParamsError

SCRIPT = r"""
import sys
from kd.devices import is_chief, multi_worker_strategy
distribution = sys.argv[2]
if distribution == "multi_worker":
    multi_worker_strategy()  # first: collectives are configured at start-up
import numpy as np
import yaml
from kd.models import build_model
from kd.devices import training_scope
from kd.seeding import seed_everything
from kd.training import fit
from test_training import small_spec, toy_splits

spec = small_spec(yaml.safe_load(open(sys.argv[1])), "teacher", distribution=distribution, epochs=3)
seed_everything(0)
train, validation = toy_splits()
with training_scope(spec):
    model = build_model(spec, (4, 4, 1), 3)
    history = fit(model, spec, train, validation, seed=0)
if is_chief():
    np.savez(sys.argv[3], *model.get_weights())
print("CHIEF" if is_chief() else "WORKER", "LOSS", history.history["loss"][-1])
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(distribution, out, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(ROOT / "params.yaml"), distribution, str(out)],
        env=child_environment(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_two_workers_train_the_same_model_as_one(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(launch("multi_worker", tmp_path / f"worker{index}.npz", {"TF_CONFIG": json.dumps(config)}))
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    assert "CHIEF LOSS" in outputs[0] and "WORKER LOSS" in outputs[1]
    assert not (tmp_path / "worker1.npz").exists()  # only the chief writes

    single = launch("default", tmp_path / "single.npz")
    output = single.communicate(timeout=600)[0]
    assert single.returncode == 0, output[-3000:]
    chief, alone = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "single.npz")
    # The same global batches, each split over two workers and its gradients summed: the same
    # training up to the order of floating-point additions.
    for key in alone.files:
        np.testing.assert_allclose(chief[key], alone[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("value, message", [
    (None, "multi_worker needs the environment variable TF_CONFIG, which is not set"),
    ("{cluster", "multi_worker needs the environment variable TF_CONFIG to be JSON; found '{cluster'"),
    (json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
     "cluster.worker to list host:port addresses; found ['localhost']"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
     "task to be {type: worker, index: 0..1}; found {'type': 'worker', 'index': 2}"),
])
def test_a_missing_or_malformed_tf_config_is_refused_before_training(value, message):
    with pytest.raises(ParamsError) as error:
        tf_config({} if value is None else {"TF_CONFIG": value})
    assert message in str(error.value)


def test_the_train_stage_refuses_multi_worker_without_tf_config(tmp_path, raw_params):
    import yaml

    from conftest import set_keys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(set_keys(raw_params, {"training.distribution": "multi_worker"})))
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"), "teacher", "--params",
                             str(tmp_path / "params.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "error: training.distribution: multi_worker needs" in result.stderr
    assert "Traceback" not in result.stderr
