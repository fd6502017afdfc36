"""The objective: today's Hinton loss unchanged, terms declared in params, several teachers.

Each kind's mathematics is checked against the authors' code in test_loss_kinds.py; here,
how terms combine: the soft-target weight, term weights, ensembles, DGKD and its drop, and
what params may declare.
"""

import numpy as np
import pytest

from kd.errors import ParamsError
from kd.losses.kinds import KINDS, parse_loss
from kd.losses.objective import Objective
from kd.losses.terms import hinton


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


def objective(loss="hinton", temperature=4.0, weight=0.5, teachers=(("teacher", 1.0),), dense=False, drop=0):
    terms = parse_loss(loss, "distill.student.loss", temperature)
    return Objective(terms, weight, dict(teachers), dense, drop)


def batch(seed=7, n=8, classes=10, teachers=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    logits = [rng.normal(scale=3.0, size=(n, classes)).astype(np.float32) for _ in range(teachers + 1)]
    return labels, logits[0], logits[1:]


@pytest.mark.parametrize("temperature, weight", [(4.0, 0.5), (1.0, 0.0), (2.5, 1.0), (10.0, 0.9)])
def test_the_default_objective_is_hintons_loss(temperature, weight):
    labels, student, (teacher,) = batch()
    total, parts = objective(temperature=temperature, weight=weight)(labels, {"logits": student}, [{"logits": teacher}])
    expected_total, expected_hard, expected_soft = hand_computed(labels, teacher, student, temperature, weight)
    assert set(parts) == {"hard_loss", "soft_loss"}  # the curves of wave 1, nothing more
    assert float(parts["hard_loss"]) == pytest.approx(expected_hard, rel=1e-5)
    assert float(parts["soft_loss"]) == pytest.approx(expected_soft, rel=1e-5)
    assert float(total) == pytest.approx(expected_total, rel=1e-5)


def test_small_hand_example():
    # Two classes, one example, T=2: teacher (2, 0) and student (0, 0).
    # p_t = softmax(1, 0) = (0.7311, 0.2689); p_s = (0.5, 0.5)
    # KL = 0.7311*ln(0.7311/0.5) + 0.2689*ln(0.2689/0.5) = 0.1109; T^2 * KL = 0.4437.
    # CE(y=0, s) = ln 2 = 0.6931; with weight 0.5: 0.5*0.4437 + 0.5*0.6931 = 0.5684.
    total, parts = objective(temperature=2.0)(
        np.array([0]), {"logits": np.array([[0.0, 0.0]], np.float32)}, [{"logits": np.array([[2.0, 0.0]], np.float32)}])
    assert float(parts["soft_loss"]) == pytest.approx(0.4437, abs=1e-4)
    assert float(total) == pytest.approx(0.5684, abs=1e-4)


def test_terms_are_weighted_and_named():
    labels, student, (teacher,) = batch()
    total, parts = objective([{"kind": "hinton", "weight": 0.9}, {"kind": "dkd", "weight": 2.0}], weight=0.5)(
        labels, {"logits": student}, [{"logits": teacher}])
    assert set(parts) == {"hard_loss", "soft_loss", "hinton", "dkd", "dkd_tckd", "dkd_nckd"}
    assert float(parts["dkd"]) == pytest.approx(float(parts["dkd_tckd"]) + 8 * float(parts["dkd_nckd"]), rel=1e-5)
    assert float(parts["soft_loss"]) == pytest.approx(0.9 * float(parts["hinton"]) + 2 * float(parts["dkd"]), rel=1e-5)
    assert float(total) == pytest.approx(0.5 * float(parts["soft_loss"]) + 0.5 * float(parts["hard_loss"]), rel=1e-5)
    assert objective([{"kind": "hinton", "weight": 0.9}, {"kind": "dkd", "weight": 2.0}]).names == \
        ["hard_loss", "soft_loss", "hinton", "dkd", "dkd_tckd", "dkd_nckd"]


def test_an_ensemble_learns_the_weighted_average_of_the_teachers_soft_targets():
    labels, student, (first, second) = batch(teachers=2)
    T = 4.0
    total, parts = objective(teachers=(("ta", 1.0), ("teacher", 3.0)), temperature=T, weight=1.0)(
        labels, {"logits": student}, [{"logits": first}, {"logits": second}])
    average = 0.25 * softmax(first / T) + 0.75 * softmax(second / T)
    log_student = np.log(softmax(student / T))
    expected = T**2 * np.mean(np.sum(average * (np.log(average) - log_student), axis=1))
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_dgkd_sums_one_term_per_teacher_and_drop_leaves_one_out_per_batch():
    labels, student, (first, second) = batch(teachers=2)
    teachers = (("ta", 1.0), ("teacher", 1.0))
    each = [float(hinton(t, student, 4.0)) for t in (first, second)]
    dense = objective(teachers=teachers, dense=True, weight=1.0)
    assert dense.names == ["hard_loss", "soft_loss", "hinton_ta", "hinton_teacher"]
    total, parts = dense(labels, {"logits": student}, [{"logits": first}, {"logits": second}], step=0)
    assert float(total) == pytest.approx(sum(each), rel=1e-5)
    assert float(parts["hinton_ta"]) == pytest.approx(each[0], rel=1e-5)

    dropping = objective(teachers=teachers, dense=True, drop=1, weight=1.0)
    kept = [float(dropping(labels, {"logits": student}, [{"logits": first}, {"logits": second}], step=s)[0])
            for s in range(20)]
    for value in kept:  # exactly one teacher's term each time
        assert value == pytest.approx(each[0], rel=1e-5) or value == pytest.approx(each[1], rel=1e-5)
    assert len({round(v, 4) for v in kept}) == 2  # both are left out on some batch
    again = [float(dropping(labels, {"logits": student}, [{"logits": first}, {"logits": second}], step=s)[0])
             for s in range(20)]
    assert again == kept  # seeded by the step


def test_dkd_warms_up_linearly_over_its_epochs():
    labels, student, (teacher,) = batch()
    warm = objective({"kind": "dkd", "warmup_epochs": 4}, weight=1.0)
    assert warm.needs_epoch
    full = float(warm(labels, {"logits": student}, [{"logits": teacher}], epoch=4)[0])
    assert float(warm(labels, {"logits": student}, [{"logits": teacher}], epoch=1)[0]) == pytest.approx(full / 4)
    assert float(warm(labels, {"logits": student}, [{"logits": teacher}], epoch=9)[0]) == pytest.approx(full)


def test_each_kind_is_registered_with_its_defaults():
    assert set(KINDS) == {"hinton", "dkd", "dist", "hint", "attention", "rkd"}
    ((term, weight),) = parse_loss("dkd", "k", 4.0)
    assert (term.config["alpha"], term.config["beta"], term.temperature, weight) == (1.0, 8.0, 4.0, 1.0)
    ((term, weight),) = parse_loss({"kind": "attention", "student_layer": "a", "teacher_layer": "b"}, "k", 4.0)
    assert weight == 1000.0 and term.features
    ((term, _),) = parse_loss({"kind": "dist", "temperature": 2}, "k", 4.0)
    assert term.temperature == 2  # a term's own temperature wins over the model's


@pytest.mark.parametrize("loss, message", [
    ("hintn", r"k.kind: unknown kind 'hintn'; expected one of hinton, dkd, dist, hint, attention, rkd"),
    ({"kind": "dkd", "beta": -1}, r"k.beta: expected a number >= 0, found -1"),
    ({"kind": "dkd", "gamma": 1}, r"k: unknown option\(s\) gamma of kind 'dkd'; expected temperature, standardize, "
                                  r"alpha, beta, warmup_epochs"),
    ({"kind": "hint", "student_layer": "h1"}, r"k: kind 'hint' needs option\(s\) teacher_layer"),
    ([{"kind": "hinton", "weight": 0}], r"k: every term has weight 0"),
    ([{"kind": "hinton", "weight": -0.5}], r"k\[0\].weight: expected a number >= 0, found -0.5"),
    ({"kind": "attention", "student_layer": ["a", "b"], "teacher_layer": "c"}, r"2 student layer\(s\) but 1"),
    ([], r"k: expected at least one term"),
    ({"kind": "rkd", "student_layer": "a", "teacher_layer": "b", "angle_triplets": 0},
     r"^k.angle_triplets: expected an integer >= 1 \(triplets sampled per batch\) or null for all of them, found 0$"),
    ({"kind": "rkd", "student_layer": "a", "teacher_layer": "b", "angle_triplets": 1e4},
     r"^k.angle_triplets: expected an integer >= 1 .*found 10000.0$"),
    ({"temperature": 2}, r"k: expected a kind"),
])
def test_bad_losses_are_refused_naming_the_key(loss, message):
    with pytest.raises(ParamsError, match=message):
        parse_loss(loss, "k", 4.0)
