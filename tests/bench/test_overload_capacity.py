"""bench/overload.py's capacity reference: the median of several closed-loop capacity runs, the run
whose accounting the others are compared with, and a study flagged when the runs disagree (one run
once measured the light model 20% high and its 2x overran the frontend and the load generator)."""

import pytest

pytest.importorskip("clipper_native", reason="overload.py reads the native engine's defaults")


def capacity_run(name: str, goodput: float) -> dict:
    return {"run": name, "goodput_rps": goodput}


def test_the_reference_is_the_median_and_one_high_run_does_not_move_it(overload):
    runs = [capacity_run("capacity 1", 29_500), capacity_run("capacity 2", 35_400),
            capacity_run("capacity 3", 30_100)]  # fmt: skip
    reference = overload.capacity_reference(runs)
    assert reference["goodput_rps"] == 30_100
    assert reference["run"]["run"] == "capacity 3"  # the accounting compares with the median's run
    assert reference["each_rps"] == [29_500, 35_400, 30_100]
    assert reference["spread"] == pytest.approx(35_400 / 29_500 - 1, abs=1e-3)
    assert reference["disagrees"] is True  # 20% apart: the study is flagged


def test_runs_within_ten_percent_agree(overload):
    runs = [capacity_run("capacity 1", 29_500), capacity_run("capacity 2", 31_000)]
    reference = overload.capacity_reference(runs)
    assert reference["goodput_rps"] == 30_250  # two runs: their mean
    assert reference["run"]["goodput_rps"] in (29_500, 31_000)
    assert reference["disagrees"] is False
    assert overload.capacity_reference([capacity_run("capacity 1", 4_100)])["spread"] == 0


def test_a_capacity_run_that_served_nothing_disagrees(overload):
    reference = overload.capacity_reference([capacity_run("a", 0.0), capacity_run("b", 4_000)])
    assert reference["spread"] is None and reference["disagrees"] is True


def study(overload, ratio_2x: float, disagrees: bool, loadgen_limited: list[str]) -> dict:
    return {
        "goodput_at_2x_over_capacity": ratio_2x,
        "goodput_at_2x_each_over_capacity": [ratio_2x],
        "loadgen_limited_runs": loadgen_limited,
        "capacity_disagrees": disagrees,
        "capacity_spread": 0.2 if disagrees else 0.03,
        "best_goodput_rps": 30_000.0,
        "goodput_at_2x_over_best": ratio_2x,
    }


def test_the_verdict_says_when_the_capacity_runs_disagree(overload):
    agreed = overload.verdict(study(overload, 0.95, False, []))
    assert "met" in agreed and "NOT" not in agreed and "not a figure of record" not in agreed
    flagged = overload.verdict(study(overload, 0.95, True, []))
    assert "capacity runs disagree (20.0% apart): not a figure of record" in flagged
    both = overload.verdict(study(overload, 0.5, True, [f"2x {overload.APP}"]))
    assert "NOT met" in both and "load generator limited" in both and "disagree" in both
    assert overload.verdict({**study(overload, 0.5, False, []), "goodput_at_2x_over_capacity": None}) is None


def test_capacity_runs_must_be_at_least_one(overload):
    assert overload.parse_args(["--capacity-runs", "3"]).capacity_runs == 3
    assert overload.parse_args([]).capacity_runs == 2
    with pytest.raises(SystemExit):
        overload.parse_args(["--capacity-runs", "0"])
