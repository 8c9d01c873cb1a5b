"""bench/overload.py's client population and its flag for runs the load generator limited: the sizing
rule (Little's law with the SLO), its ceilings, the source addresses, and the flag's two reasons."""

import argparse
import math

import pytest

pytest.importorskip(
    "clipper_native", reason="the native engine's defaults (pip install . installs clipper_native)"
)


def options(overload, *argv):
    args = overload.parse_args(["--placements", "unpinned", *argv])
    assert isinstance(args, argparse.Namespace)
    return args


def test_population_is_rate_times_slo_times_safety(overload):
    from clipper_native import defaults

    args = options(overload)
    population = overload.client_population(args, 57_000, ceiling=15_360)
    assert population["wanted"] == math.ceil(57_000 * 0.1 * 1.5) == 8_550
    assert population["connections"] == 8_550 and not population["capped"]
    per_address = defaults.MAX_CONNECTIONS_PER_CLIENT_ADDRESS // 2
    assert population["source_addresses"] == math.ceil(8_550 / per_address)
    assert population["connections"] / population["source_addresses"] <= per_address


def test_population_keeps_within_the_ceiling_and_a_floor(overload):
    args = options(overload)
    capped = overload.client_population(args, 200_000, ceiling=15_360)
    assert capped["connections"] == 15_360 and capped["capped"]
    small = overload.client_population(args, 10, ceiling=15_360)
    assert small["connections"] == overload.MIN_OPEN_LOOP_CONNECTIONS
    assert small["source_addresses"] == 1


def test_options_fix_the_population(overload):
    args = options(overload, "--connections", "2048", "--source-addresses", "3")
    fixed = overload.client_population(args, 57_000, ceiling=15_360)
    assert fixed["connections"] == 2048 and fixed["fixed_by_option"] and not fixed["capped"]
    assert fixed["source_addresses"] == 3
    safer = overload.client_population(options(overload, "--connection-safety", "3"), 1000, 15_360)
    assert safer["connections"] == 300


def test_the_ceiling_follows_the_descriptor_limits(overload):
    import os

    ceiling = overload.connection_ceiling(options(overload), os.getpid())
    assert overload.MIN_OPEN_LOOP_CONNECTIONS <= ceiling
    assert ceiling <= overload.open_file_limit(os.getpid()) - overload.DESCRIPTOR_MARGIN or (
        ceiling == overload.MIN_OPEN_LOOP_CONNECTIONS
    )
    assert overload.connection_ceiling(options(overload, "--max-connections", "999"), None) == 999


def test_bad_options_are_refused(overload):
    with pytest.raises(SystemExit):
        options(overload, "--source-addresses", "254")
    with pytest.raises(SystemExit):
        options(overload, "--connection-safety", "0")


def report(waited=0, requests=10_000, lag_p99_us=50.0, depth=0):
    return {
        "requests": requests,
        "unfinished": 0,
        "waited_for_connection": waited,
        "max_queue_depth": depth,
        "send_lag_us": {"p50": 10.0, "p99": lag_p99_us, "max": lag_p99_us},
        "latency_us": {"p99": 98_000.0},
    }


def test_a_run_that_kept_up_is_not_flagged(overload):
    # A burst that queued a few arrivals after a late wake-up is not a starved population.
    assert overload.loadgen_limits(report(waited=5, depth=40), 100_000) == []


def test_a_run_whose_requests_waited_for_connections_is_flagged(overload):
    reasons = overload.loadgen_limits(report(waited=3_485, depth=9_431), 100_000)
    assert len(reasons) == 1
    assert "3,485 of 10,000 requests waited for a free connection" in reasons[0]
    assert "9,431" in reasons[0] and "98 ms" in reasons[0]


def test_a_run_whose_generator_lagged_is_flagged(overload):
    reasons = overload.loadgen_limits(report(lag_p99_us=28_652.0), 100_000)
    assert reasons == ["requests left it 28.7 ms late at p99 (> 10 ms)"]
