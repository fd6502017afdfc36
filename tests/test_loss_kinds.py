"""Independent checks of ``kd.losses`` against the authors' original PyTorch code.

Every ``ref_*`` function below is a line-by-line NumPy (float64) translation of the
reference implementation it names, written without looking at ``kd.losses``:

* ``ref_kd``           megvii-research/mdistiller        mdistiller/distillers/KD.py      ``kd_loss``
* ``ref_standardize``  sunshangquan/logit-standardization-KD
                                                          mdistiller/distillers/KD.py      ``normalize``
* ``ref_kd`` (stand.)  sunshangquan/logit-standardization-KD
                                                          mdistiller/distillers/KD.py      ``kd_loss(..., logit_stand)``
* ``ref_dkd``          megvii-research/mdistiller        mdistiller/distillers/DKD.py     ``dkd_loss``
                       (+ logit_stand from sunshangquan/logit-standardization-KD DKD.py)
* ``ref_dist``         hunto/image_classification_sota   lib/models/losses/dist_kd.py     ``DIST.forward``
* ``ref_fitnet``       megvii-research/mdistiller        mdistiller/distillers/FitNet.py  ``F.mse_loss``
* ``ref_at``           megvii-research/mdistiller        mdistiller/distillers/AT.py      ``single_stage_at_loss`` (p=2)
* ``ref_rkd``          megvii-research/mdistiller        mdistiller/distillers/RKD.py     ``rkd_loss`` (squared=False, eps=1e-12)

torch.nn.functional semantics used in the translations:

* ``F.kl_div(input=log q, target=p)`` is elementwise ``p * (log p - log q)``, 0 where p == 0;
  ``reduction="none"`` keeps it elementwise, ``size_average=False`` sums everything.
* ``F.normalize(x, dim)`` is ``x / max(||x||_2, 1e-12)``.
* ``F.smooth_l1_loss`` has beta=1 and mean reduction; ``F.mse_loss`` has mean reduction.
* ``Tensor.std()`` is the unbiased (n - 1) standard deviation.
* PyTorch feature maps are NCHW; the code under test is NHWC, so the channel axis is LAST here.

What ``kd.losses`` returns is compared *before* the per-method weights (DKD alpha/beta,
DIST beta/gamma, RKD 25/50), as its API documents.
"""

import math

import keras
import numpy as np
import pytest

from kd.losses import terms as losses

# These checks run under every Keras backend: tests/test_backends.py runs this file under JAX and
# PyTorch as well (KERAS_BACKEND); here it runs under the process's backend, TensorFlow by default.

B, C = 8, 10


def gradient(function, value):
    """d function(x) / dx at ``value``, on the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(value)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = function(x)
        return tape.gradient(total, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: function(x))(value))
    import torch

    x = torch.tensor(value, requires_grad=True)
    function(x).backward()
    return x.grad.numpy()
TEMPERATURES = [1.0, 2.0, 4.0, 8.0]
REL = 1e-4


# --------------------------------------------------------------------------------------
# NumPy (float64) translations of the reference code
# --------------------------------------------------------------------------------------


def _np_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _np_kl_div(log_q, p):
    """F.kl_div(input=log_q, target=p, reduction='none'): p * (log p - log q), 0 where p == 0."""
    p = np.asarray(p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    out = np.zeros(np.broadcast(p, log_q).shape)
    pos = p > 0
    out[pos] = (p * (np.log(np.where(pos, p, 1.0)) - log_q))[pos]
    return out


def _np_normalize(x, axis):
    """F.normalize(x, p=2, dim=axis)."""
    n = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    return x / np.maximum(n, 1e-12)


def _np_smooth_l1(a, b):
    """F.smooth_l1_loss(a, b) with beta=1, mean reduction."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.where(d < 1.0, 0.5 * d * d, d - 0.5).mean())


def ref_standardize(logit):
    """logit-standardization-KD ``normalize``: (z - mean) / (1e-7 + std), unbiased std, last axis."""
    logit = np.asarray(logit, dtype=np.float64)
    mean = logit.mean(axis=-1, keepdims=True)
    stdv = logit.std(axis=-1, ddof=1, keepdims=True)
    return (logit - mean) / (1e-7 + stdv)


def ref_kd(logits_student, logits_teacher, temperature, logit_stand=False):
    """mdistiller / logit-standardization-KD ``kd_loss``."""
    s = ref_standardize(logits_student) if logit_stand else np.asarray(logits_student, np.float64)
    t = ref_standardize(logits_teacher) if logit_stand else np.asarray(logits_teacher, np.float64)
    log_pred_student = _np_log_softmax(s / temperature, axis=1)
    pred_teacher = _np_softmax(t / temperature, axis=1)
    loss_kd = _np_kl_div(log_pred_student, pred_teacher).sum(1).mean()
    return float(loss_kd * temperature**2)


def _cat_mask(t, mask1, mask2):
    t1 = (t * mask1).sum(axis=1, keepdims=True)
    t2 = (t * mask2).sum(axis=1, keepdims=True)
    return np.concatenate([t1, t2], axis=1)


def ref_dkd(logits_student, logits_teacher, target, temperature, logit_stand=False):
    """mdistiller ``dkd_loss`` returning (tckd_loss, nckd_loss) before alpha and beta."""
    s = ref_standardize(logits_student) if logit_stand else np.asarray(logits_student, np.float64)
    t = ref_standardize(logits_teacher) if logit_stand else np.asarray(logits_teacher, np.float64)
    target = np.asarray(target).reshape(-1)
    gt_mask = np.zeros_like(s)
    gt_mask[np.arange(len(target)), target] = 1.0
    other_mask = 1.0 - gt_mask
    pred_student = _cat_mask(_np_softmax(s / temperature, axis=1), gt_mask, other_mask)
    pred_teacher = _cat_mask(_np_softmax(t / temperature, axis=1), gt_mask, other_mask)
    with np.errstate(divide="ignore"):
        log_pred_student = np.log(pred_student)
    tckd = _np_kl_div(log_pred_student, pred_teacher).sum() * temperature**2 / target.shape[0]
    pred_teacher_part2 = _np_softmax(t / temperature - 1000.0 * gt_mask, axis=1)
    log_pred_student_part2 = _np_log_softmax(s / temperature - 1000.0 * gt_mask, axis=1)
    nckd = (
        _np_kl_div(log_pred_student_part2, pred_teacher_part2).sum()
        * temperature**2
        / target.shape[0]
    )
    return float(tckd), float(nckd)


def _cosine_similarity(a, b, eps=1e-8):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def _pearson_correlation(a, b, eps=1e-8):
    return _cosine_similarity(a - a.mean(1)[:, None], b - b.mean(1)[:, None], eps)


def _inter_class_relation(y_s, y_t):
    return 1.0 - _pearson_correlation(y_s, y_t).mean()


def _intra_class_relation(y_s, y_t):
    return _inter_class_relation(y_s.T, y_t.T)


def ref_dist(z_s, z_t, tau):
    """image_classification_sota ``DIST.forward`` returning (inter_loss, intra_loss) before beta, gamma."""
    y_s = _np_softmax(np.asarray(z_s, np.float64) / tau, axis=1)
    y_t = _np_softmax(np.asarray(z_t, np.float64) / tau, axis=1)
    inter_loss = tau**2 * _inter_class_relation(y_s, y_t)
    intra_loss = tau**2 * _intra_class_relation(y_s, y_t)
    return float(inter_loss), float(intra_loss)


def ref_fitnet(f_s, f_t):
    """FitNet's ``F.mse_loss(f_s, f_t)`` (regressor already applied)."""
    d = np.asarray(f_s, np.float64) - np.asarray(f_t, np.float64)
    return float((d * d).mean())


def _avg_pool_to(feat, out_hw):
    """F.adaptive_avg_pool2d on NHWC when the input size is an integer multiple of out_hw."""
    n, h, w, c = feat.shape
    kh, kw = h // out_hw, w // out_hw
    assert kh * out_hw == h and kw * out_hw == w
    return feat.reshape(n, out_hw, kh, out_hw, kw, c).mean(axis=(2, 4))


def ref_at(f_s, f_t, p=2):
    """mdistiller ``single_stage_at_loss`` on NHWC maps (channel axis last)."""
    f_s = np.asarray(f_s, np.float64)
    f_t = np.asarray(f_t, np.float64)

    def _at(feat):
        return _np_normalize((feat**p).mean(-1).reshape(feat.shape[0], -1), axis=1)

    s_H, t_H = f_s.shape[1], f_t.shape[1]
    if s_H > t_H:
        f_s = _avg_pool_to(f_s, t_H)
    elif s_H < t_H:
        f_t = _avg_pool_to(f_t, s_H)
    return float(((_at(f_s) - _at(f_t)) ** 2).mean())


def _pdist(e, squared, eps):
    e_square = (e**2).sum(axis=1)
    prod = e @ e.T
    res = np.maximum(e_square[:, None] + e_square[None, :] - 2 * prod, eps)
    if not squared:
        res = np.sqrt(res)
    res = res.copy()
    res[np.arange(len(e)), np.arange(len(e))] = 0
    return res


def ref_rkd(f_s, f_t, squared=False, eps=1e-12):
    """mdistiller ``rkd_loss`` returning (loss_d, loss_a) before distance_weight and angle_weight."""
    stu = np.asarray(f_s, np.float64).reshape(f_s.shape[0], -1)
    tea = np.asarray(f_t, np.float64).reshape(f_t.shape[0], -1)

    t_d = _pdist(tea, squared, eps)
    t_d = t_d / t_d[t_d > 0].mean()
    d = _pdist(stu, squared, eps)
    d = d / d[d > 0].mean()
    loss_d = _np_smooth_l1(d, t_d)

    td = tea[None, :, :] - tea[:, None, :]
    norm_td = _np_normalize(td, axis=2)
    t_angle = np.matmul(norm_td, norm_td.transpose(0, 2, 1)).reshape(-1)
    sd = stu[None, :, :] - stu[:, None, :]
    norm_sd = _np_normalize(sd, axis=2)
    s_angle = np.matmul(norm_sd, norm_sd.transpose(0, 2, 1)).reshape(-1)
    loss_a = _np_smooth_l1(s_angle, t_angle)
    return loss_d, loss_a


# --------------------------------------------------------------------------------------
# Fixed random inputs
# --------------------------------------------------------------------------------------


def _logits(seed, scale=3.0):
    rng = np.random.default_rng(seed)
    teacher = (scale * rng.standard_normal((B, C))).astype(np.float32)
    student = (scale * rng.standard_normal((B, C))).astype(np.float32)
    labels = rng.integers(0, C, size=B)
    return teacher, student, labels


def _pair(out):
    assert isinstance(out, (tuple, list)) and len(out) == 2
    return float(out[0]), float(out[1])


# --------------------------------------------------------------------------------------
# standardize
# --------------------------------------------------------------------------------------


def test_standardize_hand_worked():
    # [1, 2, 3]: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1  ->  [-1, 0, 1] / (1 + 1e-7).
    # [2, 4, 6, 8]: mean 5, unbiased var (9 + 1 + 1 + 9) / 3 = 20/3, std 2.5819889
    #   -> [-3, -1, 1, 3] / 2.5819889 = [-1.1618950, -0.3872983, 0.3872983, 1.1618950]
    #   (the biased std sqrt(5) would give +-1.3416, +-0.4472 instead).
    out = np.asarray(losses.standardize(np.array([[1.0, 2.0, 3.0]], np.float32)))
    assert out.shape == (1, 3)
    assert out.ravel() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-5)
    out = np.asarray(losses.standardize(np.array([[2.0, 4.0, 6.0, 8.0]], np.float32)))
    assert out.ravel() == pytest.approx([-1.1618950, -0.3872983, 0.3872983, 1.1618950], abs=1e-5)


def test_standardize_matches_reference_per_row():
    teacher, _, _ = _logits(0)
    teacher[3] = teacher[3] * 10.0 + 5.0  # rows are standardised independently
    out = np.asarray(losses.standardize(teacher), np.float64)
    assert out.shape == (B, C)
    np.testing.assert_allclose(out, ref_standardize(teacher), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(-1, ddof=1), 1.0, rtol=1e-4)


# --------------------------------------------------------------------------------------
# hinton (KD)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_hinton_matches_reference(temperature):
    teacher, student, _ = _logits(1)
    got = float(losses.hinton(teacher, student, temperature))
    assert got == pytest.approx(ref_kd(student, teacher, temperature), rel=REL)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_hinton_standardized_matches_reference(temperature):
    teacher, student, _ = _logits(2)
    got = float(losses.hinton(teacher, student, temperature, standardize=True))
    assert got == pytest.approx(ref_kd(student, teacher, temperature, logit_stand=True), rel=REL)
    # ... and equals plain hinton on z-scored logits.
    on_z = float(
        losses.hinton(
            ref_standardize(teacher).astype(np.float32),
            ref_standardize(student).astype(np.float32),
            temperature,
        )
    )
    assert got == pytest.approx(on_z, rel=REL)


def test_hinton_hand_worked():
    # teacher [ln 2, ln 3, 0] -> softmax [2, 3, 1] / 6 = [1/3, 1/2, 1/6]; student 0 -> [1/3]*3.
    # KL = 1/3 ln 1 + 1/2 ln 1.5 + 1/6 ln 0.5 = 0.2027326 - 0.1155245 = 0.0872081 (T = 1).
    teacher = np.array([[math.log(2.0), math.log(3.0), 0.0]], np.float32)
    student = np.zeros((1, 3), np.float32)
    assert float(losses.hinton(teacher, student, 1.0)) == pytest.approx(0.0872081, abs=1e-5)
    # T^2 factor: scaling both logits by T and using temperature T gives T^2 * KL.
    assert float(losses.hinton(4.0 * teacher, 4.0 * student, 4.0)) == pytest.approx(
        16.0 * 0.0872081, abs=1e-4
    )


def test_hinton_zero_for_equal_and_standardize_removes_affine_gap():
    teacher, _, _ = _logits(3)
    assert float(losses.hinton(teacher, teacher.copy(), 4.0)) == pytest.approx(0.0, abs=1e-6)
    student = (0.3 * teacher + 2.0).astype(np.float32)  # per-row positive affine copy
    assert float(losses.hinton(teacher, student, 4.0)) > 1e-2
    assert float(losses.hinton(teacher, student, 4.0, standardize=True)) == pytest.approx(
        0.0, abs=1e-5
    )


def test_hinton_accepts_backend_tensors():
    teacher, student, _ = _logits(4)
    convert = keras.ops.convert_to_tensor
    got = float(losses.hinton(convert(teacher), convert(student), 2.0))
    assert got == pytest.approx(ref_kd(student, teacher, 2.0), rel=REL)


# --------------------------------------------------------------------------------------
# dkd
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_matches_reference(temperature):
    teacher, student, labels = _logits(5)
    tckd, nckd = _pair(losses.dkd(teacher, student, labels, temperature))
    ref_t, ref_n = ref_dkd(student, teacher, labels, temperature)
    assert tckd == pytest.approx(ref_t, rel=REL)
    assert nckd == pytest.approx(ref_n, rel=REL)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_standardized_matches_reference(temperature):
    teacher, student, labels = _logits(6)
    tckd, nckd = _pair(losses.dkd(teacher, student, labels, temperature, standardize=True))
    ref_t, ref_n = ref_dkd(student, teacher, labels, temperature, logit_stand=True)
    assert tckd == pytest.approx(ref_t, rel=REL)
    assert nckd == pytest.approx(ref_n, rel=REL)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_masks_follow_labels(temperature):
    teacher, student, _ = _logits(7)
    on_argmax = np.argmax(teacher, axis=1)  # target class is the teacher's top class
    off_argmax = (on_argmax + 1) % C  # target class is not the teacher's top class
    got_on = _pair(losses.dkd(teacher, student, on_argmax, temperature))
    got_off = _pair(losses.dkd(teacher, student, off_argmax, temperature))
    ref_on = ref_dkd(student, teacher, on_argmax, temperature)
    ref_off = ref_dkd(student, teacher, off_argmax, temperature)
    assert got_on == pytest.approx(ref_on, rel=REL)
    assert got_off == pytest.approx(ref_off, rel=REL)
    # The labels must actually change the result (the masks are not ignored).
    assert abs(ref_on[0] - ref_off[0]) > 1e-3 and abs(ref_on[1] - ref_off[1]) > 1e-3


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_dkd_hand_worked(label_dtype):
    # 1 sample, 3 classes, T = 1, label 1.
    # teacher [ln 2, ln 3, 0] -> softmax [1/3, 1/2, 1/6]; student [0, 0, 0] -> [1/3, 1/3, 1/3].
    # TCKD: bins (target, rest): teacher (1/2, 1/2), student (1/3, 2/3)
    #   = 1/2 ln(1/2 / 1/3) + 1/2 ln(1/2 / 2/3) = 1/2 ln 1.5 + 1/2 ln 0.75 = 1/2 ln 1.125
    #   = 0.0588915
    # NCKD: non-target classes {0, 2}: teacher [2, 1] / 3 = (2/3, 1/3), student (1/2, 1/2)
    #   = 2/3 ln(4/3) + 1/3 ln(2/3) = 0.1917881 - 0.1351550 = 0.0566331
    teacher = np.array([[math.log(2.0), math.log(3.0), 0.0]], np.float32)
    student = np.zeros((1, 3), np.float32)
    labels = np.array([1], label_dtype)
    tckd, nckd = _pair(losses.dkd(teacher, student, labels, 1.0))
    assert tckd == pytest.approx(0.0588915, abs=1e-4)
    assert nckd == pytest.approx(0.0566331, abs=1e-4)


def test_dkd_extreme_logits_are_finite():
    # Teacher [100, 0, 0] with label 0 at T = 1: the teacher's "rest" bin underflows to 0 in
    # float32; a confident student's "rest" bin also underflows, so a naive log(0) * 0 gives NaN.
    teacher = np.array([[100.0, 0.0, 0.0], [100.0, 0.0, 0.0]], np.float32)
    student = np.array([[100.0, 0.0, 0.0], [120.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 0])
    tckd, nckd = _pair(losses.dkd(teacher, student, labels, 1.0))
    assert math.isfinite(tckd) and math.isfinite(nckd)
    assert tckd == pytest.approx(0.0, abs=1e-4)
    assert nckd == pytest.approx(0.0, abs=1e-4)

    # The gradient that training would take must be finite as well.
    grad = gradient(lambda s: losses.add_all(list(losses.dkd(teacher, s, labels, 1.0))), student)
    assert grad is not None and np.all(np.isfinite(grad))

    # A less confident student: still finite and still the reference value.
    student2 = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]], np.float32)
    tckd, nckd = _pair(losses.dkd(teacher, student2, labels, 1.0))
    ref_t, ref_n = ref_dkd(student2, teacher, labels, 1.0)
    assert tckd == pytest.approx(ref_t, rel=REL)
    assert nckd == pytest.approx(ref_n, rel=REL, abs=1e-6)


# --------------------------------------------------------------------------------------
# Gradients: DKD and DIST give theirs in closed form (terms.decoupled_kl, terms.dist_relations);
# each part's against central differences of the float64 reference
# --------------------------------------------------------------------------------------


def central_differences(function, value, step=1e-5, rows=None):
    """d function(value) / d value[rows] (every row by default) by central differences, in float64."""
    value = np.asarray(value, np.float64)
    rows = range(len(value)) if rows is None else rows
    grad = np.zeros((len(rows), value.shape[1]))
    for at, row in enumerate(rows):
        for column in range(value.shape[1]):
            plus, minus = value.copy(), value.copy()
            plus[row, column] += step
            minus[row, column] -= step
            grad[at, column] = (function(plus) - function(minus)) / (2 * step)
    return grad


GRADIENT_CASES = [  # (kind, temperature, part, standardize)
    *[("dkd", t, part, False) for t in (1.0, 4.0) for part in (0, 1)],
    *[("dkd", 4.0, part, True) for part in (0, 1)],
    *[("dist", t, part, False) for t in (1.0, 4.0) for part in (0, 1)],
]


@pytest.mark.parametrize("kind, temperature, part, standardize", GRADIENT_CASES)
def test_closed_form_gradients_match_the_reference(kind, temperature, part, standardize):
    teacher, student, labels = _logits(11)
    if kind == "dkd":
        ours = lambda s: losses.dkd(teacher, s, labels, temperature, standardize=standardize)[part]  # noqa: E731
        theirs = lambda s: ref_dkd(s, teacher, labels, temperature, logit_stand=standardize)[part]  # noqa: E731
    else:
        ours = lambda s: losses.dist(teacher, s, temperature)[part]  # noqa: E731
        theirs = lambda s: ref_dist(s, teacher, temperature)[part]  # noqa: E731
    expected = central_differences(theirs, student)
    got = gradient(ours, student)
    assert np.abs(expected).max() > 1e-3  # a gradient worth comparing
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


# --------------------------------------------------------------------------------------
# dist
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dist_matches_reference(temperature):
    teacher, student, _ = _logits(8)
    inter, intra = _pair(losses.dist(teacher, student, temperature))
    ref_inter, ref_intra = ref_dist(student, teacher, temperature)
    assert inter == pytest.approx(ref_inter, rel=REL)
    assert intra == pytest.approx(ref_intra, rel=REL)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dist_intra_uses_the_transpose(temperature):
    # Make every student row a positive affine function of the teacher's row of probabilities,
    # with a different slope per row: y_s[i] = a_i * y_t[i] + (1 - a_i) / C (still sums to 1).
    # Per-row Pearson correlation is then exactly 1, so inter = 0, but across the batch
    # (per class, i.e. on the transpose) the relation is no longer linear, so intra > 0.
    teacher, _, _ = _logits(9)
    y_t = _np_softmax(teacher.astype(np.float64) / temperature, axis=1)
    a = np.linspace(0.2, 1.0, B)[:, None]
    y_s = a * y_t + (1.0 - a) / C
    student = (temperature * np.log(y_s)).astype(np.float32)
    ref_inter, ref_intra = ref_dist(student, teacher, temperature)
    assert ref_inter == pytest.approx(0.0, abs=1e-5) and ref_intra > 1e-2  # sanity of the setup
    inter, intra = _pair(losses.dist(teacher, student, temperature))
    assert inter == pytest.approx(0.0, abs=1e-4 * temperature**2)
    assert intra == pytest.approx(ref_intra, rel=REL)


def test_dist_zero_for_equal_logits():
    teacher, _, _ = _logits(10)
    inter, intra = _pair(losses.dist(teacher, teacher.copy(), 4.0))
    assert inter == pytest.approx(0.0, abs=1e-4)
    assert intra == pytest.approx(0.0, abs=1e-4)


# --------------------------------------------------------------------------------------
# fitnet
# --------------------------------------------------------------------------------------


def test_fitnet_is_mse():
    rng = np.random.default_rng(11)
    f_s = rng.standard_normal((B, 4, 4, 16)).astype(np.float32)
    f_t = rng.standard_normal((B, 4, 4, 16)).astype(np.float32)
    assert float(losses.fitnet(f_s, f_t)) == pytest.approx(ref_fitnet(f_s, f_t), rel=REL)
    assert float(losses.fitnet(f_t, f_t.copy())) == pytest.approx(0.0, abs=1e-7)
    # Hand-worked: differences (1, -2, 0, 3) -> (1 + 4 + 0 + 9) / 4 = 3.5
    a = np.array([[1.0, 0.0], [2.0, 3.0]], np.float32)
    b = np.array([[0.0, 2.0], [2.0, 0.0]], np.float32)
    assert float(losses.fitnet(a, b)) == pytest.approx(3.5, rel=1e-6)


# --------------------------------------------------------------------------------------
# attention (AT)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "s_shape, t_shape",
    [
        ((B, 4, 4, 16), (B, 4, 4, 32)),  # same spatial size, different channel counts
        ((B, 8, 8, 16), (B, 4, 4, 32)),  # student larger: pooled 2x2
        ((B, 4, 4, 16), (B, 8, 8, 32)),  # teacher larger: pooled 2x2
        ((B, 8, 8, 8), (B, 2, 2, 8)),  # student larger: pooled 4x4
    ],
)
def test_attention_matches_reference(s_shape, t_shape):
    rng = np.random.default_rng(12)
    f_s = rng.standard_normal(s_shape).astype(np.float32)
    f_t = rng.standard_normal(t_shape).astype(np.float32)
    assert float(losses.attention(f_s, f_t)) == pytest.approx(ref_at(f_s, f_t), rel=REL)


def test_attention_is_zero_for_positive_scale():
    rng = np.random.default_rng(13)
    f_t = rng.standard_normal((B, 4, 4, 16)).astype(np.float32)
    f_s = (3.0 * f_t).astype(np.float32)  # attention maps scale by 9, then are L2-normalised
    assert ref_at(f_s, f_t) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.attention(f_s, f_t)) == pytest.approx(0.0, abs=1e-7)
    # Sanity: an unrelated map does not give 0.
    other = rng.standard_normal((B, 4, 4, 16)).astype(np.float32)
    assert float(losses.attention(other, f_t)) > 1e-4


# --------------------------------------------------------------------------------------
# rkd
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(B, 16), (B, 2, 2, 4)])
def test_rkd_matches_reference(shape):
    rng = np.random.default_rng(14)
    f_s = rng.standard_normal(shape).astype(np.float32)
    f_t = rng.standard_normal(shape).astype(np.float32)
    dist_loss, angle_loss = _pair(losses.rkd(f_s, f_t))
    ref_d, ref_a = ref_rkd(f_s, f_t)
    assert dist_loss == pytest.approx(ref_d, rel=REL)
    assert angle_loss == pytest.approx(ref_a, rel=REL)


def test_rkd_is_zero_for_scaled_copy():
    # Distances are divided by their mean (scale-free) and angles do not depend on scale.
    rng = np.random.default_rng(15)
    f_t = rng.standard_normal((B, 16)).astype(np.float32)
    f_s = (2.5 * f_t).astype(np.float32)
    dist_loss, angle_loss = _pair(losses.rkd(f_s, f_t))
    assert dist_loss == pytest.approx(0.0, abs=1e-6)
    assert angle_loss == pytest.approx(0.0, abs=1e-6)
    # Sanity: a different embedding gives clearly non-zero terms.
    other = rng.standard_normal((B, 16)).astype(np.float32)
    dist_loss, angle_loss = _pair(losses.rkd(other, f_t))
    assert dist_loss > 1e-3 and angle_loss > 1e-3


def test_rkd_sampled_angle_is_the_full_terms_cosines_at_the_sampled_triplets():
    rng = np.random.default_rng(16)
    f_s, f_t = (rng.standard_normal((B, 16)).astype(np.float32) for _ in range(2))
    f_s[1] = f_s[0]  # a coincident pair: its cosines are 0 in both forms
    triplets = rng.random((500, 3), dtype=np.float32)
    _, angle = _pair(losses.rkd(f_s, f_t, distance=False, triplets=triplets))
    rows = np.floor(triplets * B).astype(int)

    def cosines(e):
        e = np.asarray(e, np.float64)
        full = _np_normalize(e[None, :, :] - e[:, None, :], axis=2)
        full = np.matmul(full, full.transpose(0, 2, 1))  # [i, j, k]
        return full[rows[:, 0], rows[:, 1], rows[:, 2]]

    assert angle == pytest.approx(_np_smooth_l1(cosines(f_s), cosines(f_t)), rel=REL)
    # The distance term does not depend on the sampling.
    assert _pair(losses.rkd(f_s, f_t, triplets=triplets))[0] == pytest.approx(ref_rkd(f_s, f_t)[0], rel=REL)


def test_rkd_sampled_angle_estimates_the_full_one_within_its_stated_tolerance():
    # docs/losses.md states it: 16,384 triplets at batch 256 keep the angle term within 2 % of the full
    # one, on a student's features that partly follow the teacher's.
    rng = np.random.default_rng(17)
    triplets = rng.random((16384, 3), dtype=np.float32)
    for _ in range(5):
        f_t = rng.standard_normal((256, 32)).astype(np.float32)
        f_s = (f_t + rng.standard_normal((256, 32))).astype(np.float32)
        full = _pair(losses.rkd(f_s, f_t, distance=False))[1]
        sampled = _pair(losses.rkd(f_s, f_t, distance=False, triplets=triplets))[1]
        assert sampled == pytest.approx(full, rel=0.02)
