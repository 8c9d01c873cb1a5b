"""The W3 study: a model costing ~1 ms per call plus ~20 us per input of real CPU work; batching off,
every fixed batch size and the adaptive controller, closed and open loop.

Owns W3's model parameters and request bodies; the procedure, table, plots and results file are
batching_study.py's (shared with W4). Runs on the main thread; about two and a half minutes with
the defaults.

    python bench/w3.py                         # SLO 20 ms, 64 closed loop connections
    python bench/w3.py --slo-micros 50000      # a looser SLO
    python bench/w3.py --rates 1000 4000 8000  # explicit open loop rates

The model (models.CalibratedBurner) measures the speed of a pure-Python CPU loop when its replica
starts and burns fixed_micros + per_input_micros x batch size of it per call, so its cost holds on
any machine. Every request is a distinct 10-double vector (loadgen --w1), so no cache could answer
it; the cache is off by default anyway. Writes bench/results/w3.json and three PNGs beside it:
w3_sweep.png (throughput and p99 against batch size), w3_open_loop.png, w3_adaptive_batch_size.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import batching_study
import common
import models


def w1_vector(index: int) -> dict[str, Any]:
    return {"input": [float(index)] + [0.5] * 9}


def workload(args: argparse.Namespace, report_path: str) -> batching_study.Workload:
    """W3 served by a CalibratedBurner whose replicas append their calibration to `report_path`."""
    models.register_by_value()
    return batching_study.Workload(
        key="w3",
        title=(
            f"W3: {args.fixed_micros:g} us per call + {args.per_input_micros:g} us per input "
            "(calibrated CPU work)"
        ),
        input_type="doubles",
        model_function=lambda: models.CalibratedBurner(
            args.fixed_micros, args.per_input_micros, report_path
        ),
        loadgen_workload="w1",
        probe=w1_vector,
        description={
            "model": "models.CalibratedBurner: sum(range(n)) calibrated at replica start",
            "fixed_micros": args.fixed_micros,
            "per_input_micros": args.per_input_micros,
            "requests": "loadgen --w1: every request a distinct 10-double vector",
        },
        off_target=5.0,
        calibration=lambda: models.read_calibration_reports(report_path),
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    batching_study.add_arguments(parser, default_slo_micros=20_000)
    parser.add_argument(
        "--fixed-micros", type=float, default=1000.0, help="model cost per call (default 1000)"
    )
    parser.add_argument(
        "--per-input-micros", type=float, default=20.0, help="model cost per input (default 20)"
    )
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "w3.json")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipper-bench-w3-") as scratch:
        return batching_study.run_study(workload(args, os.path.join(scratch, "calibration")), args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
