"""Multi-seed summaries: mean ± std per model, paired gains, and gains within the noise called so."""

import pytest

from kd.seeds import markdown, summarise, within_noise


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
