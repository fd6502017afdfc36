import numpy as np
import pytest

from kd.losses import distillation_loss, soft_target_loss


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hand_computed(labels, teacher, student, temperature, weight):
    """The Hinton loss written out with NumPy, term by term."""
    p_teacher = softmax(teacher / temperature)
    p_student = softmax(student / temperature)
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1).mean()
    soft = temperature**2 * kl
    hard = -np.log(softmax(student)[np.arange(len(labels)), labels]).mean()
    return weight * soft + (1 - weight) * hard, hard, soft


@pytest.mark.parametrize("temperature, weight", [(4.0, 0.5), (1.0, 0.0), (2.5, 1.0), (10.0, 0.9)])
def test_distillation_loss_matches_numpy(temperature, weight):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, size=8)
    teacher = rng.normal(scale=3.0, size=(8, 10)).astype(np.float32)
    student = rng.normal(scale=3.0, size=(8, 10)).astype(np.float32)

    total, hard, soft = distillation_loss(labels, teacher, student, temperature, weight)
    expected_total, expected_hard, expected_soft = hand_computed(labels, teacher, student, temperature, weight)

    assert float(hard) == pytest.approx(expected_hard, rel=1e-5)
    assert float(soft) == pytest.approx(expected_soft, rel=1e-5)
    assert float(total) == pytest.approx(expected_total, rel=1e-5)


def test_soft_target_loss_is_zero_when_student_matches_teacher():
    logits = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    assert float(soft_target_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_small_hand_example():
    # Two classes, one example, T=2: teacher (2, 0) and student (0, 0).
    # p_t = softmax(1, 0) = (0.7311, 0.2689); p_s = (0.5, 0.5)
    # KL = 0.7311*ln(0.7311/0.5) + 0.2689*ln(0.2689/0.5) = 0.1109; T^2 * KL = 0.4437.
    # CE(y=0, s) = ln 2 = 0.6931; with weight 0.5: 0.5*0.4437 + 0.5*0.6931 = 0.5684.
    total, _, soft = distillation_loss(
        np.array([0]), np.array([[2.0, 0.0]], np.float32), np.array([[0.0, 0.0]], np.float32), 2.0, 0.5
    )
    assert float(soft) == pytest.approx(0.4437, abs=1e-4)
    assert float(total) == pytest.approx(0.5684, abs=1e-4)
