"""What a refused query costs the frontend, in instructions (callgrind), not time: a shared machine's
noise does not reach the figure.

The standalone clipper-frontend runs under callgrind with a model that takes 300 ms per batch behind
an app with a 20 ms SLO: once its first batch is measured, every query is refused at arrival (429),
except a probe every so often (admission control measures an idle model again after 500 ms without an
answered batch). Instrumentation is switched on only for the measured window (callgrind_control), in
which clipper-loadgen sends W1 queries (10 doubles, each vector new) on a few keep-alive connections.
Figure: instructions of the whole frontend process in the window / requests answered, with the 429
and 200 (probe) counts beside it.

Each frontend binary given (label=path; by default the installed one) runs, for each protocol (Clipper's
/predict and the Open Inference Protocol's infer, `--protocols`), twice: with the prediction cache off
(the refusal comes before the body is decoded) and on (the body is decoded and the cache consulted
before refusing). /update is not measured: the standalone frontend runs no selection worker, so it
answers every update 503 before admission. Give the binary built before a change to compare:

    python bench/refusal_cost.py --frontend before=/path/to/old/clipper-frontend
    python bench/refusal_cost.py --seconds 5

About 10-15 s per binary, protocol and cache setting (valgrind start-up, the first slow batch, the window).
Owns bench/results/refusal_cost.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import callgrind_frontend
import common

SLO_MICROS = 20_000
PROTOCOLS = ("predict", "oip")
MODEL_SECONDS_PER_BATCH = 0.3
MODEL_SOURCE = f"""
import time
from clipper.container import Model

class Slow(Model):
    def predict_batch(self, inputs):
        time.sleep({MODEL_SECONDS_PER_BATCH})
        return ["1.0" for _ in inputs]
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    callgrind_frontend.add_frontend_argument(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        default=list(PROTOCOLS),
        help="predict: POST /slow/predict (Clipper's JSON); oip: POST /v2/models/slow/infer "
        "(an Open Inference Protocol FP64 tensor in JSON)",
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "refusal_cost.json")
    return parser.parse_args(argv)


def one_run(
    label: str, binary: str, cache_on: bool, protocol: str, args: argparse.Namespace, loadgen: str
):
    config = {
        "apps": [{"name": "slow", "input_type": "doubles", "default_output": "-1",
                  "slo_micros": SLO_MICROS, "linked_models": ["slow"]}],
        "models": [{"name": "slow", "version": "1", "input_type": "doubles", "current": True}],
    }  # fmt: skip
    cache_bytes = "33554432" if cache_on else "0"
    with callgrind_frontend.frontend_under_callgrind(
        binary, config, ["--cache-size-bytes", cache_bytes], prefix="clipper-refusal-"
    ) as frontend:
        frontend.start_replica(MODEL_SOURCE, "Slow", "slow", "doubles")
        url = frontend.base + "/slow/predict"
        counter = iter(range(10**9))

        def refused() -> bool:
            status, _ = common.post_json(url, {"input": [0.25, float(next(counter))]}, 10.0)
            return status == 429

        callgrind_frontend.wait(
            refused, 120, "the first refusal (the model's first batch measured)"
        )
        build = frontend.build_info()
        extra = ["--drain", "2"]
        if protocol == "oip":
            url = frontend.base + "/v2/models/slow/infer"
            extra += ["--body-format", "oip-json"]
        command = common.loadgen_command(
            loadgen, url, connections=args.connections, duration_seconds=args.seconds,
            warmup_seconds=0.0, workload="w1", extra_args=extra,
        )  # fmt: skip
        before = refusals_by_reason(frontend.base)
        run, totals = frontend.window(
            lambda: common.run_loadgen(command, timeout_seconds=args.seconds + 60)
        )
        after = refusals_by_reason(frontend.base)
    report = run.report
    answered = sum(report["status"].values())
    return {
        "frontend": label,
        "binary": binary,
        "build": build,
        "cache": "on" if cache_on else "off",
        "protocol": protocol,
        "requests": answered,
        "status": report["status"],
        # Where the refusals came from (the window plus its drain): `lag` ones, refused before
        # decoding whatever the cache, happen when the valgrind-slowed loop falls behind.
        "refused_by_reason": {reason: after[reason] - before.get(reason, 0) for reason in after},
        "instructions": totals.instructions,
        "instructions_per_request": round(totals.instructions / answered) if answered else None,
    }


def refusals_by_reason(base_url: str) -> dict[str, int]:
    """clipper_app_rejected_total of app `slow`, by reason, from the frontend's /metrics."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    found = re.findall(r'^clipper_app_rejected_total\{app="slow",reason="(\w+)"\} (\d+)$', text, re.MULTILINE)
    return {reason: int(count) for reason, count in found}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    runs = []
    for label, binary in callgrind_frontend.binaries(args.frontend):
        for protocol in args.protocols:
            for cache_on in (False, True):
                print(f"{label}, {protocol}, cache {'on' if cache_on else 'off'} ...",
                      file=sys.stderr)  # fmt: skip
                runs.append(one_run(label, binary, cache_on, protocol, args, loadgen))
                row = runs[-1]
                print(f"  {row['instructions_per_request']:,} instructions per request over "
                      f"{row['requests']:,} ({row['status']})", file=sys.stderr)  # fmt: skip
    payload: dict[str, Any] = {
        "study": "refusal_cost",
        "machine": common.machine_info(),
        "slo_micros": SLO_MICROS,
        "model_seconds_per_batch": MODEL_SECONDS_PER_BATCH,
        "runs": runs,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"{'frontend':<12} {'protocol':<9} {'cache':<6} {'requests':>9} {'429':>7} "
          f"{'instr/request':>14}  refused by reason")  # fmt: skip
    for row in runs:
        print(f"{row['frontend']:<12} {row['protocol']:<9} {row['cache']:<6} {row['requests']:>9,} "
              f"{row['status'].get('429', 0):>7,} {row['instructions_per_request'] or 0:>14,}  "
              f"{row['refused_by_reason']}")  # fmt: skip
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
