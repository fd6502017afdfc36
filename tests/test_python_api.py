"""kd used from one's own Keras code (docs/python.md) keeps working, and kd's terms keep Keras's interface.

- Every ```` ```python ```` block of docs/python.md runs as it stands, each in a fresh
  interpreter under ``KERAS_BACKEND=tensorflow``, with src/ on the path as ``pip install -e .``
  puts it: an example that no longer runs fails here, naming its line.
- :class:`kd.keras_distillation.HintonLoss` is Keras's ``LogitsDistillation`` with a
  ``KLDivergence`` instance, equal with no factor between them, wherever Keras's KL does not clip
  (every probability at least 1e-7); Keras's default string loss is not Hinton's loss.
- Each class computes kd's own term, and refuses bad options (and softmax outputs) in one line.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

PAGE = ROOT / "docs" / "python.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks():
    """``(line of the opening fence, code)`` of each python block of the page."""
    text = PAGE.read_text()
    return [(text.count("\n", 0, match.start()) + 1, match[1]) for match in PYTHON_BLOCK.finditer(text)]


def test_the_page_has_its_examples():
    assert len(python_blocks()) >= 4, f"{PAGE.name}: expected its four examples as ```python blocks"


@pytest.mark.parametrize("line, code", python_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_every_python_block_runs(line, code, tmp_path):
    script = tmp_path / f"python_md_line{line}.py"
    script.write_text(code)
    # kd as a user has it: installed (make install), imported from outside the repository.
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"docs/python.md:{line}: the example fails:\n{result.stderr[-3000:]}"


def random_logits(seed, scale=2.0, shape=(64, 10)):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=shape)).astype(np.float32), (scale * rng.normal(size=shape)).astype(np.float32)


def smallest_probability(logits, temperature):
    scaled = logits / temperature
    log_probs = scaled - scaled.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    return float(np.exp(log_probs).min())


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_hinton_loss_is_keras_logits_distillation_with_a_kl_instance(temperature):
    import keras

    from kd.keras_distillation import HintonLoss

    theirs = keras.distillation.LogitsDistillation(temperature=temperature, loss=keras.losses.KLDivergence())
    for seed in range(5):
        teacher, student = random_logits(seed)
        assert min(smallest_probability(teacher, temperature), smallest_probability(student, temperature)) >= 1e-7
        ours_value = float(HintonLoss(temperature).compute_loss(teacher, student))
        their_value = float(theirs.compute_loss(teacher, student))
        np.testing.assert_allclose(ours_value, their_value, rtol=2e-6, atol=0)

    # Where probabilities fall under 1e-7, Keras's KL clips them and the two part.
    teacher, student = random_logits(0, scale=10.0)
    assert smallest_probability(teacher, 1.0) < 1e-7
    ours_value = float(HintonLoss(1.0).compute_loss(teacher, student))
    their_value = float(keras.distillation.LogitsDistillation(1.0, loss=keras.losses.KLDivergence())
                        .compute_loss(teacher, student))
    assert abs(ours_value - their_value) > 0.01 * ours_value


def test_keras_default_logits_distillation_is_not_hintons_loss():
    import keras

    from kd.keras_distillation import HintonLoss

    teacher, student = random_logits(0)
    ours_value = float(HintonLoss(4.0).compute_loss(teacher, student))
    default = float(keras.distillation.LogitsDistillation(temperature=4.0).compute_loss(teacher, student))
    assert abs(default - ours_value) > 0.5 * ours_value, (default, ours_value)


def test_each_loss_computes_kds_own_term():
    from kd.losses import terms as losses
    from kd.keras_distillation import DistLoss, HintonLoss, StandardizedHintonLoss

    teacher, student = random_logits(1)
    np.testing.assert_allclose(float(HintonLoss(3.0).compute_loss(teacher, student)),
                               float(losses.hinton(teacher, student, 3.0)), rtol=1e-6)
    np.testing.assert_allclose(float(StandardizedHintonLoss(2.0).compute_loss(teacher, student)),
                               float(losses.hinton(teacher, student, 2.0, standardize=True)), rtol=1e-6)
    inter, intra = losses.dist(teacher, student, 4.0)
    np.testing.assert_allclose(float(DistLoss(4.0, beta=2.0, gamma=0.5).compute_loss(teacher, student)),
                               float(2.0 * inter + 0.5 * intra), rtol=1e-6)


@pytest.mark.parametrize("make, message", [
    ("HintonLoss(temperature=0)", "HintonLoss.temperature: expected a number > 0, found 0"),
    ("HintonLoss(temperature=-4.0)", "HintonLoss.temperature: expected a number > 0, found -4.0"),
    ("HintonLoss(temperature=None)", "HintonLoss.temperature: expected a number > 0, found None"),
    ("HintonLoss(temperature='4')", "HintonLoss.temperature: expected a number > 0, found '4'"),
    ("HintonLoss(temperature=True)", "HintonLoss.temperature: expected a number > 0, found True"),
    ("HintonLoss(temperature=float('nan'))", "HintonLoss.temperature: expected a number > 0, found nan"),
    ("StandardizedHintonLoss(temperature=0)", "StandardizedHintonLoss.temperature: expected a number > 0, found 0"),
    ("DistLoss(beta=-1)", "DistLoss.beta: expected a number >= 0, found -1"),
])
def test_bad_options_are_refused_in_one_line(make, message):
    from kd import keras_distillation

    with pytest.raises(ValueError) as raised:
        eval(make, vars(keras_distillation))
    assert str(raised.value) == message


def test_softmax_outputs_are_refused_and_configs_round_trip():
    import keras

    from kd.keras_distillation import DistLoss, HintonLoss

    def classifier(activation):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])

    refused = r"^HintonLoss: the teacher '\w+' ends in a softmax, but kd's terms take logits"
    with pytest.raises(ValueError, match=refused):
        keras.distillation.Distiller(teacher=classifier("softmax"), student=classifier(None),
                                     distillation_losses=HintonLoss())
    loss = DistLoss(2.0, beta=0.5)
    assert repr(loss) == "DistLoss(temperature=2.0, beta=0.5, gamma=1.0)"
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is DistLoss and again.get_config() == loss.get_config()
