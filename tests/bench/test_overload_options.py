"""bench/overload.py's cluster options: the prefetch flag leaves the engine's default alone unless it is
given (it once forced prefetch off whenever it was missing), and the load generator's niceness."""

import pytest

pytest.importorskip(
    "clipper_native", reason="the native engine's defaults (pip install . installs clipper_native)"
)


def test_prefetch_left_to_the_engine_unless_given(overload):
    assert overload.prefetch_option(overload.parse_args([])) == {}
    on = overload.parse_args(["--replica-prefetch-full-batches", "on"])
    off = overload.parse_args(["--replica-prefetch-full-batches", "off"])
    assert overload.prefetch_option(on) == {"replica_prefetch_full_batches": True}
    assert overload.prefetch_option(off) == {"replica_prefetch_full_batches": False}


def test_loadgen_nice_defaults_to_zero_and_is_bounded(overload):
    assert overload.parse_args([]).loadgen_nice == 0
    assert overload.parse_args(["--loadgen-nice", "10"]).loadgen_nice == 10
    for wrong in ("-1", "20"):
        with pytest.raises(SystemExit):
            overload.parse_args(["--loadgen-nice", wrong])
