"""Multi-seed summaries: mean ± std per model, paired gains, and gains within the noise called so."""

import pytest

from kd.seeds import markdown, summarise, versus_configuration, within_noise


def comparison(student, scratch):
    return {
        "measured_on": {"cores": 2},
        "student_scratch": {"teacher": "", "accuracy": scratch, "errors": round((1 - scratch) * 10000)},
        "student": {"teacher": "teacher", "accuracy": student, "errors": round((1 - student) * 10000),
                    "gain_vs_student_scratch": student - scratch},
    }


def test_means_spreads_and_paired_gains():
    summary = summarise({0: comparison(0.9930, 0.9900), 1: comparison(0.9920, 0.9910), 2: comparison(0.9925, 0.9905)})
    assert summary["seeds"] == [0, 1, 2]
    student = summary["models"]["student"]
    assert student["accuracy"]["mean"] == pytest.approx(0.9925)
    assert student["accuracy"]["std"] == pytest.approx(0.0005)
    assert student["errors"]["values"] == [70, 80, 75]
    gain = summary["gains"]["student vs student_scratch"]
    assert gain["mean"] == pytest.approx(0.0020) and not within_noise(gain)
    report = markdown(summary, "test")
    assert "| student | teacher | 99.25 ± 0.05 % | 75.0 ± 5.0 | 70 / 80 / 75 |" in report
    assert "| student vs student_scratch | +0.20 ± 0.10 pt | +0.30 / +0.10 / +0.20 | gain |" in report


def test_a_gain_smaller_than_its_spread_is_called_noise():
    summary = summarise({0: comparison(0.9930, 0.9900), 1: comparison(0.9900, 0.9910), 2: comparison(0.9905, 0.9900)})
    gain = summary["gains"]["student vs student_scratch"]
    assert within_noise(gain)
    assert "within seed noise" in markdown(summary, "test")


def test_runs_with_different_models_are_refused():
    runs = {0: comparison(0.99, 0.98), 1: comparison(0.99, 0.98)}
    del runs[1]["student_scratch"]
    with pytest.raises(ValueError, match="model 'student_scratch' is missing from some runs"):
        summarise(runs)


def test_versus_lists_each_model_against_one_baseline_only():
    def run(direct, dkd, scratch):
        rows = {"student_scratch": {"teacher": "", "accuracy": scratch, "errors": 0}}
        for name, accuracy in (("student_direct", direct), ("kd_dkd", dkd)):
            rows[name] = {"teacher": "teacher", "accuracy": accuracy, "errors": 0,
                          "gain_vs_student_scratch": accuracy - scratch}
        rows["student_direct"]["gain_vs_kd_dkd"] = direct - dkd
        rows["kd_dkd"]["gain_vs_student_direct"] = dkd - direct
        return rows

    summary = summarise({0: run(0.9870, 0.9880, 0.9780), 1: run(0.9875, 0.9890, 0.9790)})
    report = markdown(summary, "methods", versus="student_direct")
    assert "| kd_dkd vs student_direct | +0.12 ± 0.04 pt |" in report
    assert "vs student_scratch" not in report and "student_direct vs kd_dkd" not in report


def test_exported_files_are_summarised_against_their_keras_models():
    def files(int8_accuracy, keras_accuracy):
        return {"student · int8": {"accuracy": int8_accuracy, "errors": round((1 - int8_accuracy) * 10000),
                                   "vs_keras": int8_accuracy - keras_accuracy, "size_bytes": 1_284_584}}

    runs = {0: comparison(0.9859, 0.9773), 1: comparison(0.9865, 0.9776)}
    summary = summarise(runs, {0: files(0.9860, 0.9859), 1: files(0.9862, 0.9865)})
    delta = summary["exported"]["student · int8"]["vs_keras"]
    assert delta["values"] == pytest.approx([0.0001, -0.0003])
    assert "| student · int8 | 98.61 ± 0.01 % | -0.01 ± 0.03 pt | +0.01 / -0.03 | 1.28 MB |" in markdown(summary, "test")
    with pytest.raises(ValueError, match="exported file 'student · int8' is missing from some runs"):
        summarise(runs, {0: files(0.9860, 0.9859), 1: {}})


def test_a_recorded_run_names_its_command_commit_machine_and_seconds():
    summary = summarise({0: comparison(0.9930, 0.9900), 1: comparison(0.9920, 0.9910)})
    assert "Run by" not in markdown(summary, "test")  # reports from before runs were recorded
    summary.update(command="tools/seeds.py best --seeds 0 1", commit="0123456789abcdef",
                   machine={"cpu": "Some CPU", "cores": 2}, pipeline_seconds={"0": 812.4, "1": 1003.0})
    assert ("Run by `tools/seeds.py best --seeds 0 1` at commit 0123456 on Some CPU (2 cores); "
            "stages' seconds per seed, as its outputs record them (a stage DVC restored from its run-cache "
            "carries the seconds of the run that computed it): 812 s, 1,003 s.") in markdown(summary, "test")


def test_two_configurations_are_compared_seed_by_seed():
    baseline = summarise({0: comparison(0.9930, 0.9900), 1: comparison(0.9920, 0.9910), 2: comparison(0.9925, 0.9905)})
    other = summarise({0: comparison(0.9920, 0.9905), 1: comparison(0.9910, 0.9900), 2: comparison(0.9916, 0.9915)})
    baseline.update(commit="0123456789abcdef", machine={"cpu": "Some CPU", "cores": 2},
                    pipeline_seconds={"0": 600.0, "1": 610.0, "2": 620.4})
    other["models"]["teacher"] = baseline["models"]["teacher"] = {"teacher": "", "accuracy": None,
                                                                  "errors": {"values": [64, 64, 65], "mean": 64.3}}
    other["pipeline_seconds"] = {0: 900.0, 1: 910.0, 2: 1020.0}  # a report from before runs were recorded
    table = versus_configuration(other, baseline, "bf16", "default")
    rows = table.splitlines()
    assert rows[0].startswith("| model | default, test errors (seeds 0 / 1 / 2) | bf16 | bf16 − default, per seed |")
    assert rows[2] == "| teacher | 64.3 ± 0.6 (64 / 64 / 65) | 64.3 ± 0.6 (64 / 64 / 65) | +0 / +0 / +0 | +0.0 ± 0.0 | the same errors |"
    assert rows[3] == "| student | 75.0 ± 5.0 (70 / 80 / 75) | 84.7 ± 5.0 (80 / 90 / 84) | +10 / +10 / +9 | +9.7 ± 0.6 | more errors |"
    assert rows[4] == ("| student_scratch | 95.0 ± 5.0 (100 / 90 / 95) | 93.3 ± 7.6 (95 / 100 / 85) | -5 / +10 / -10 | "
                       "-1.7 ± 10.4 | within seed noise |")  # most accurate model of the baseline first
    assert ("`default` at commit 0123456 on Some CPU (2 cores), stages' seconds per seed 600 / 610 / 620; "
            "`bf16` by a run that recorded neither commit nor machine, stages' seconds per seed 900 / 910 / 1,020.") in table


def test_configurations_without_a_seed_in_common_are_refused():
    one = summarise({0: comparison(0.9930, 0.9900)})
    other = summarise({1: comparison(0.9930, 0.9900)})
    with pytest.raises(ValueError, match="reports 'bf16' and 'default' share no seed and model to compare"):
        versus_configuration(other, one, "bf16", "default")


def test_one_shared_seed_gets_its_difference_and_no_verdict():
    baseline = summarise({0: comparison(0.9930, 0.9900), 1: comparison(0.9920, 0.9910)})
    other = summarise({0: comparison(0.9935, 0.9900)})
    for report in (baseline, other):
        report["pipeline_seconds"] = {str(seed): 600.0 for seed in report["seeds"]}
    rows = versus_configuration(other, baseline, "jax", "default").splitlines()
    assert rows[0] == "| model | default, test errors (seeds 0 / 1) | jax (seed 0) | jax − default, seed 0 | mean ± std | verdict |"
    assert rows[2] == "| student | 75.0 ± 7.1 (70 / 80) | 65 | -5 | — | one seed: no verdict |"
