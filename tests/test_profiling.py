import numpy as np
import pytest

from kd.comparison import compare, markdown, reference_teacher
from kd.models import build_model
from kd.params import EvaluateSpec, parse_params
from kd.profiling import count_flops, count_params, measure_latency


@pytest.mark.parametrize(
    "name, expected", [("teacher", 11_021_029), ("ta", 3_073_557), ("student", 1_237_941)]
)
def test_flops_are_seed_002s_count(raw_params, name, expected):
    model = build_model(parse_params(raw_params).model(name), (28, 28, 1), 10)
    assert count_flops(model) == (expected, None)


def test_params_and_latency(raw_params):
    params = parse_params(raw_params)
    model = build_model(params.model("student"), (28, 28, 1), 10)
    assert count_params(model) == (1_238_730, 1_238_730)
    latency = measure_latency(model, np.zeros((1, 28, 28, 1), np.float32), EvaluateSpec(latency_repeats=3, latency_warmup=1, throughput_batch_size=8, throughput_repeats=2))
    assert latency["latency_ms_batch1"] > 0 and latency["throughput_per_s"] > 0


def test_comparison_ratios_and_gains(raw_params):
    params = parse_params(raw_params)
    assert reference_teacher(params) == "teacher"
    accuracy = {"teacher": 0.99, "student_scratch": 0.97, "ta": 0.985, "student": 0.98, "student_direct": 0.975}
    flops = {"teacher": 1000, "ta": 250, "student": 100, "student_scratch": 100, "student_direct": 100}
    metrics = {n: {"accuracy": a, "errors": round((1 - a) * 10000), "params": flops[n] * 2, "flops": flops[n],
                   "size_bytes": 1} for n, a in accuracy.items()}
    latencies = {n: {"latency_ms_batch1": 1.0, "throughput_per_s": 10.0} for n in accuracy}
    comparison = compare(params, metrics, latencies)
    assert comparison["student"]["accuracy_drop_vs_teacher"] == pytest.approx(0.01)
    assert comparison["student"]["flops_compression"] == pytest.approx(10.0)
    assert comparison["ta"]["params_compression"] == pytest.approx(4.0)
    assert comparison["student"]["gain_vs_student_scratch"] == pytest.approx(0.01)
    assert comparison["student"]["gain_vs_student_direct"] == pytest.approx(0.005)
    assert "gain_vs_student" not in comparison["teacher"]
    table = markdown(comparison, {"latency_repeats": 1, "latency_warmup": 0, "throughput_repeats": 1,
                                  "throughput_batch_size": 8, "cpu": "x", "cores": 2, "tensorflow": "2"})
    assert "| student | ta | 98.00 % | 200 |" in table
    assert "`student` vs `student_scratch`: +1.00 pt" in table
