"""Every loss kind where its arithmetic is fragile, against float64 NumPy references.

Kinds: hinton, hinton with logit standardization, dkd, dist, hint (FitNets' MSE), attention, rkd,
an ensemble of two teachers and DGKD. Cases: ordinary inputs, duplicate rows, logits × 30
(saturated softmax), temperatures 0.5, 1 and 20, batches of 1 and 2, every row of one class, and
the student's tensors as a Keras layer under the mixed_float16 and mixed_bfloat16 policies gives
them. Each asserts a finite value, a finite gradient with respect to the student's inputs, and the
reference's value within the tolerances below.

The references are tests/test_loss_kinds.py's translations of the authors' code; RKD's is
rewritten here from difference vectors in float64, exact for near-duplicate rows, where the Gram
matrix of mdistiller's pdist cancels even in float64 (3e-4 relative on the distance of two rows
of 64 features 1e-6 apart).

Where a loss is undefined (docs/losses.md, "Edge cases"): RKD on a batch of one has no pair of
samples, so both its terms are 0 with zero gradient; DIST's correlation over a batch of one (its
intra-class relation) is the authors' 0 / (0 + 1e-8) = 0, so that term is τ², a constant.

The backends: this file runs under TensorFlow; ``test_the_compact_subset_on_jax_and_torch`` runs
its ``compact`` tests (every kind on duplicate rows, saturated logits and a batch of two, and RKD's
near duplicates) under JAX and PyTorch, each in a process of its own.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT
from kd.losses import terms as losses
from kd.losses.kinds import parse_loss
from kd.losses.objective import Objective
from test_loss_kinds import _np_normalize, _np_smooth_l1, _np_softmax, central_differences, ref_at, ref_dist, ref_dkd, ref_fitnet, ref_kd

BACKEND = keras.backend.backend()

# Tolerances, |got − reference| <= RTOL · |reference| + ATOL · scale, per part; scale is T² for
# logit kinds (their values and their float32 rounding grow as T²), 900 for hints on features × 30
# (an MSE), 1 otherwise. Measured on this grid (TensorFlow, CPU), the worst case uses about a
# quarter of its bound: float32 9e-6 relative (DGKD at T = 20, a sum of two KLs × 400) and 5e-5
# absolute on DKD's TCKD of 0.2 at T = 20; the mixed policies' inputs, rounded to 11 (float16) and
# 8 (bfloat16) significant bits, move the values by up to 2.3e-4 (DKD, saturated) and 5.5e-3 (RKD,
# duplicate rows) relative. Against the reference on the rounded inputs every kind but attention
# is float32-exact under both policies: the loss maths casts to float32 first. Attention
# average-pools the larger map before its cast, in the policy's dtype (up to 6e-4 relative in
# bfloat16), so it is held to the policy's tolerance there.
RTOL = {"float32": 1e-5, "float16": 1e-3, "bfloat16": 2e-2}
ATOL = {"float32": 1e-6, "float16": 1e-4, "bfloat16": 1e-3}
B, C = 8, 10
TEMPERATURES = [0.5, 1.0, 20.0]
LOGIT_CASES = ["ordinary", "duplicate_rows", "saturated", "batch_1", "batch_2", "one_class"]
FEATURE_CASES = ["ordinary", "duplicate_rows", "saturated", "batch_1", "batch_2"]
MIXED_CASES = ["ordinary", "duplicate_rows", "saturated"]


# --------------------------------------------------------------------------------------------
# Inputs


def logit_inputs(case, seed=0):
    """``(student, first teacher, second teacher, labels)``, float32 logits of ``case``."""
    rng = np.random.default_rng(seed)
    n = {"batch_1": 1, "batch_2": 2}.get(case, B)
    scale = 90.0 if case == "saturated" else 3.0  # × 30
    student, first, second = (scale * rng.standard_normal((3, n, C))).astype(np.float32)
    labels = rng.integers(0, C, size=n)
    if case == "duplicate_rows":
        for array in (student, first, second, labels):
            array[1] = array[0]
    if case == "one_class":  # every label 0, and every model's top class 0
        labels[:] = 0
        for array in (student, first, second):
            array[:, 0] += 10.0
    return student, first, second, labels


FEATURE_SHAPES = {"hint": ((16,), (16,)), "attention": ((8, 8, 8), (4, 4, 16)), "rkd": ((32,), (24,))}


def feature_inputs(kind, case, seed=1):
    """``(student feature, teacher feature)``, float32, as ``kind`` compares them."""
    rng = np.random.default_rng(seed)
    n = {"batch_1": 1, "batch_2": 2}.get(case, B)
    scale = 30.0 if case == "saturated" else 1.0
    student_shape, teacher_shape = FEATURE_SHAPES[kind]
    student = (scale * rng.standard_normal((n, *student_shape))).astype(np.float32)
    teacher = (scale * rng.standard_normal((n, *teacher_shape))).astype(np.float32)
    if case == "duplicate_rows":
        student[1], teacher[1] = student[0], teacher[0]
    return student, teacher


def under_policy(array, precision):
    """``array`` as a Keras layer under the ``mixed_<precision>`` policy outputs it (float32: as is)."""
    if precision == "float32":
        return array
    return keras.layers.Activation("linear", dtype=f"mixed_{precision}")(array)


def as_float64(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor)).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Values and gradients on the current backend


def evaluate(parts, student, precision="float32"):
    """``(values of parts(student), d sum(parts) / d student)``; ``student`` float32, passed
    through a layer under ``precision``'s mixed policy inside the differentiation."""

    def total(x):
        values = parts(under_policy(x, precision))
        return losses.add_all(list(values)), values

    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(student)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, values = total(x)
        gradient = tape.gradient(value, x)
    elif BACKEND == "jax":
        import jax

        (_, values), gradient = jax.jit(jax.value_and_grad(total, has_aux=True))(student)
    else:
        import torch

        x = torch.tensor(student, requires_grad=True)
        value, values = total(x)
        value.backward()
        gradient = x.grad
    return [float(keras.ops.convert_to_numpy(v)) for v in values], np.asarray(keras.ops.convert_to_numpy(gradient))


def objective(loss, temperature, teachers, dense=False):
    terms = parse_loss(loss, "stress.loss", temperature)
    return Objective(terms, 1.0, dict(teachers), dense)


ENSEMBLE = (("ta", 1.0), ("teacher", 3.0))
DGKD = (("ta", 1.0), ("teacher", 2.0))


def logit_term(kind, temperature, first, second, labels):
    """``parts(student)`` for a logit kind, the teachers' logits fixed."""
    if kind == "hinton":
        return lambda s: [losses.hinton(first, s, temperature)]
    if kind == "standardize":
        return lambda s: [losses.hinton(first, s, temperature, standardize=True)]
    if kind == "dkd":
        return lambda s: list(losses.dkd(first, s, labels, temperature))
    if kind == "dist":
        return lambda s: list(losses.dist(first, s, temperature))
    loss, teachers, dense = {"ensemble": ("hinton", ENSEMBLE, False), "dgkd": ("hinton", DGKD, True)}[kind]
    whole = objective(loss, temperature, teachers, dense)
    # soft_target_weight 1: the loss is the teachers' share alone.
    return lambda s: [whole(labels, {"logits": s}, [{"logits": first}, {"logits": second}], step=0)[0]]


def logit_reference(kind, temperature, student, first, second, labels):
    """The float64 reference's parts, from tests/test_loss_kinds.py's translations."""
    if kind == "hinton":
        return [ref_kd(student, first, temperature)]
    if kind == "standardize":
        return [ref_kd(student, first, temperature, logit_stand=True)]
    if kind == "dkd":
        return list(ref_dkd(student, first, labels, temperature))
    if kind == "dist":
        return list(ref_dist(student, first, temperature))
    if kind == "ensemble":  # KD against the weighted average of the teachers' soft targets
        (_, w1), (_, w2) = ENSEMBLE
        average = (w1 * _np_softmax(first / temperature) + w2 * _np_softmax(second / temperature)) / (w1 + w2)
        with np.errstate(divide="ignore"):
            return [ref_kd(student, temperature * np.log(average), temperature)]
    (_, w1), (_, w2) = DGKD  # one KD term per teacher, weighted
    return [w1 * ref_kd(student, first, temperature) + w2 * ref_kd(student, second, temperature)]


def ref_rkd_differences(f_s, f_t, eps=1e-12):
    """RKD's ``(distance, angle)`` in float64 from difference vectors: the authors' formulas (pdist:
    sqrt(max(d², eps)) off the diagonal, 0 on it, over the mean of the positive ones; the angle from
    F.normalize'd differences), without the Gram matrix. A batch of one: (0, 0), kd's definition."""
    if len(f_s) == 1:
        return 0.0, 0.0

    def relations(e):
        e = np.asarray(e, np.float64).reshape(len(e), -1)
        differences = e[None, :, :] - e[:, None, :]
        d = np.sqrt(np.maximum((differences**2).sum(-1), eps))
        d[np.arange(len(e)), np.arange(len(e))] = 0.0
        directions = _np_normalize(differences, axis=2)
        return d / d[d > 0].mean(), np.matmul(directions, directions.transpose(0, 2, 1)).reshape(-1)

    (d_s, a_s), (d_t, a_t) = relations(f_s), relations(f_t)
    return _np_smooth_l1(d_s, d_t), _np_smooth_l1(a_s, a_t)


def feature_term(kind, teacher):
    if kind == "hint":
        return lambda s: [losses.fitnet(s, teacher)]
    if kind == "attention":
        return lambda s: [losses.attention(s, teacher)]
    return lambda s: list(losses.rkd(s, teacher))


def feature_reference(kind, student, teacher):
    if kind == "hint":
        return [ref_fitnet(student, teacher)]
    if kind == "attention":
        return [ref_at(student, teacher)]
    return list(ref_rkd_differences(student, teacher))


def assert_close(got, expected, precision, scale=1.0, what=""):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert np.all(np.isfinite(got)), f"{what}: {got}"
    bound = RTOL[precision] * np.abs(expected) + ATOL[precision] * scale
    assert np.all(np.abs(got - expected) <= bound), f"{what}: {got} against {expected} (bound {bound})"


def check(kind, case, temperature=1.0, precision="float32"):
    """Value and gradient of ``kind`` on ``case``: finite, and the float64 reference's value."""
    if kind in FEATURE_SHAPES:
        student, teacher = feature_inputs(kind, case)
        teacher_in = under_policy(teacher, precision)
        parts, gradient = evaluate(feature_term(kind, teacher_in), student, precision)
        rounded = feature_reference(kind, as_float64(under_policy(student, precision)), as_float64(teacher_in))
        unrounded = feature_reference(kind, student, teacher)
        scale = 900.0 if (kind == "hint" and case == "saturated") else 1.0
    else:
        student, first, second, labels = logit_inputs(case)
        first_in, second_in = under_policy(first, precision), under_policy(second, precision)
        parts, gradient = evaluate(logit_term(kind, temperature, first_in, second_in, labels), student, precision)
        rounded = logit_reference(kind, temperature, as_float64(under_policy(student, precision)),
                                  as_float64(first_in), as_float64(second_in), labels)
        unrounded = logit_reference(kind, temperature, student, first, second, labels)
        scale = temperature**2
    assert gradient.shape == student.shape and np.all(np.isfinite(gradient)), gradient
    # The maths is float32 whatever the policy: float32-close to the reference on its own inputs ...
    exact = precision if kind == "attention" else "float32"
    assert_close(parts, rounded, exact, scale, f"{kind} {case} against the rounded inputs")
    # ... and the policy's rounding of the inputs moves it no more than its precision allows.
    assert_close(parts, unrounded, precision, scale, f"{kind} {case} against the float32 inputs")
    return parts, gradient


# --------------------------------------------------------------------------------------------
# The grid, under this process's backend (TensorFlow)

LOGIT_KINDS = ["hinton", "standardize", "dkd", "dist", "ensemble", "dgkd"]
FEATURE_KINDS = list(FEATURE_SHAPES)


def _temperature_id(t):
    return f"T{t:g}".replace(".", "_")


@pytest.mark.parametrize("temperature", TEMPERATURES, ids=_temperature_id)
@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_logit_kinds(kind, case, temperature):
    check(kind, case, temperature)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", MIXED_CASES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_logit_kinds_under_mixed_precision(kind, case, precision):
    check(kind, case, 4.0, precision)


@pytest.mark.parametrize("case", FEATURE_CASES)
@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_feature_kinds(kind, case):
    check(kind, case)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", MIXED_CASES)
@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_feature_kinds_under_mixed_precision(kind, case, precision):
    check(kind, case, precision=precision)


# --------------------------------------------------------------------------------------------
# The edge cases' decisions (docs/losses.md, "Edge cases")


def test_rkd_on_a_batch_of_one_is_zero_with_zero_gradient():
    student, teacher = feature_inputs("rkd", "batch_1")
    (distance, angle), gradient = evaluate(feature_term("rkd", teacher), student)
    assert (distance, angle) == (0.0, 0.0)
    assert np.all(gradient == 0.0)


@pytest.mark.parametrize("temperature", TEMPERATURES, ids=_temperature_id)
def test_dist_on_a_batch_of_one_has_the_authors_constant_intra_term(temperature):
    student, first, _, _ = logit_inputs("batch_1")
    (inter, intra), gradient = evaluate(lambda s: list(losses.dist(first, s, temperature)), student)
    assert intra == pytest.approx(temperature**2, rel=1e-6)  # τ² · (1 − 0): no correlation over one sample
    assert ref_dist(student, first, temperature)[1] == pytest.approx(temperature**2, rel=1e-6)
    _, inter_gradient = evaluate(lambda s: [losses.dist(first, s, temperature)[0]], student)
    np.testing.assert_array_equal(gradient, inter_gradient)  # the intra term adds no gradient


# --------------------------------------------------------------------------------------------
# RKD on near-duplicate rows: value and gradient against float64


def _rkd_reference_gradient(f_s, f_t, part, rows):
    """d part / d f_s[rows] of the float64 reference, by central differences with a step 1e-3 of
    the smallest distance between two rows (the scale on which the angles turn)."""
    f_s = np.asarray(f_s, np.float64)
    differences = f_s[None, :, :] - f_s[:, None, :]
    distances = np.sqrt((differences**2).sum(-1))
    step = 1e-3 * min(1.0, distances[distances > 0].min())
    return central_differences(lambda f: ref_rkd_differences(f, f_t)[part], f_s, step, rows)


def near_duplicates(noise, scale, seed=3):
    """16 rows of 64 features, row 1 = row 0 + ``noise`` in both the student and the teacher, × ``scale``."""
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal((2, 16, 64))
    student[1] = student[0] + noise * rng.standard_normal(64)
    teacher[1] = teacher[0] + noise * rng.standard_normal(64)
    return (scale * student).astype(np.float32), (scale * teacher).astype(np.float32)


# Tolerances: values 1e-5 relative (float32); gradients 2e-5 of the reference gradient's largest
# entry, over rows 0–3 (the near pair and two others). The float32 difference of two close rows is
# exact, so neither degrades as the noise shrinks; measured worst (TensorFlow): values 1.5e-7,
# gradients 1.3e-6. The Gram matrix's float32 cancellation gave, at noise 1e-4 on features × 10,
# an angle term of 9.5e5 for 4.9e-3 and a gradient of norm 1.1e7 for 0.23.
RKD_VALUE_RTOL, RKD_GRADIENT_RTOL = 1e-5, 2e-5


@pytest.mark.parametrize("noise, scale", [(1e-3, 1.0), (1e-4, 1.0), (1e-6, 1.0), (1e-4, 10.0)])
def test_compact_rkd_near_duplicates_match_float64(noise, scale):
    student, teacher = near_duplicates(noise, scale)
    reference = ref_rkd_differences(student, teacher)
    for part in (0, 1):  # distance, angle
        (value,), gradient = evaluate(lambda s, part=part: [losses.rkd(s, teacher)[part]], student)
        assert value == pytest.approx(reference[part], rel=RKD_VALUE_RTOL)
        rows = [0, 1, 2, 3]
        expected = _rkd_reference_gradient(student, teacher, part, rows)
        assert np.all(np.isfinite(gradient))
        np.testing.assert_allclose(gradient[rows], expected, rtol=0, atol=RKD_GRADIENT_RTOL * np.abs(expected).max())


def test_compact_rkd_exact_duplicates_take_the_coincident_pairs_convention():
    # Rows 0 and 1 coincide in the student: their difference is the zero vector, whose direction
    # is the zero vector (F.normalize), so its cosines are 0; their distance is pdist's
    # sqrt(1e-12) = 1e-6, counted in the mean. The value is the float64 reference's, and the
    # gradient is finite; on rows other than the pair it is the reference's derivative.
    student, teacher = near_duplicates(1e-4, 1.0)
    student[1] = student[0]
    reference = ref_rkd_differences(student, teacher)
    for part in (0, 1):
        (value,), gradient = evaluate(lambda s, part=part: [losses.rkd(s, teacher)[part]], student)
        assert value == pytest.approx(reference[part], rel=RKD_VALUE_RTOL)
        assert np.all(np.isfinite(gradient))
        expected = _rkd_reference_gradient(student, teacher, part, [2, 3])
        np.testing.assert_allclose(gradient[[2, 3]], expected, rtol=0, atol=RKD_GRADIENT_RTOL * np.abs(expected).max())


# --------------------------------------------------------------------------------------------
# JAX and PyTorch: a compact subset, each backend in a process of its own

COMPACT = [(kind, case) for kind in LOGIT_KINDS + FEATURE_KINDS for case in ("duplicate_rows", "saturated", "batch_2")]


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the grid above covers it here; run under JAX and PyTorch")
@pytest.mark.parametrize("kind, case", COMPACT)
def test_compact_subset(kind, case):
    check(kind, case)


BACKENDS = [backend for backend in ("jax", "torch") if importlib.util.find_spec(backend)]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="started from the TensorFlow process only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_compact_subset_on_jax_and_torch(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "KD_RAW_STDERR": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "compact",
                             "tests/test_loss_stress.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(COMPACT) + 5} passed" in result.stdout, result.stdout[-1000:]
