"""What the Open Inference Protocol costs against Clipper's own API, for the same model, in one run.

Owns the OIP study and bench/results/oip.json. One local cluster (public admin API) serves one no-op
model behind one app (`doubles`, 100 ms SLO, cache on). clipper-loadgen drives the W1 workload (a
distinct 10-double vector per request, so every query misses the cache and reaches the model; 64
keep-alive connections, closed loop) against the same app in three forms, in alternating windows so
all three see the same machine:

- `predict`:    POST /<app>/predict        {"input": [10 doubles]}
- `oip-json`:   POST /v2/models/<app>/infer  one FP64 [1, 10] tensor as JSON; JSON outputs
- `oip-binary`: the same tensor in binary (Inference-Header-Content-Length), binary outputs
                (what tritonclient sends by default)

It reports each form's median throughput and p50/p99 over the windows, and the OIP/predict ratios
(target: OIP >= 0.9x predict's throughput). Processes unpinned, as users run them; on a shared
machine the ratios, measured in the same run, are what to read, not the absolute numbers.

    python bench/oip.py                        # 5 rounds of 5 s windows
    python bench/oip.py --rounds 3 --seconds 8 --connections 16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common
import models

APP = "oip-bench"
FORMS = ("predict", "oip-json", "oip-binary")


def form_command(loadgen: str, running, form: str, options) -> list[str]:
    if form == "predict":
        url, body_format = running.url(APP), "clipper"
    else:
        url, body_format = f"http://{running.query_addr}/v2/models/{APP}/infer", form
    return common.loadgen_command(
        loadgen,
        url,
        connections=options.connections,
        duration_seconds=options.seconds,
        warmup_seconds=1.0,
        extra_args=["--body-format", body_format],
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_window_options(parser, 5.0, "alternating windows of each form")
    options = parser.parse_args(argv)

    from clipper.deployers.python import deploy_python_closure

    models.register_by_value()
    loadgen = common.find_loadgen()
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        running = cluster.start_local_cluster(stack, "oip", cache_size_bytes=32 * 1024 * 1024)
        conn = running.connection
        deploy_python_closure(
            conn, name="noop", version="1", input_type="doubles", func=models.noop
        )
        conn.register_application(APP, "doubles", default_output="-1", slo_micros=100_000)
        conn.link_model_to_app(APP, "noop")
        cluster.wait_for_model_answer(running.url(APP), lambda i: {"input": [float(i)] * 10})

        commands = {form: form_command(loadgen, running, form, options) for form in FORMS}
        windows = common.alternating_windows(commands, options.rounds)

    forms = {form: common.windows_summary(windows[form]) for form in FORMS}
    predict = forms["predict"]["throughput_rps"]
    # The median of per-round ratios is the steadier figure (the machine's other work cancels).
    per_round = {
        form: common.per_round_ratios(windows[form], windows["predict"]) for form in FORMS[1:]
    }
    results = {
        "machine": common.machine_info(),
        "load_average_before": load_before,
        "source": cluster.source_revision(),
        "settings": {
            "rounds": options.rounds,
            "seconds": options.seconds,
            "connections": options.connections,
            "workload": "w1",
            "model": "no-op, 1 replica",
        },
        "forms": forms,
        "oip_json_over_predict": common.ratio(forms["oip-json"]["throughput_rps"], predict),
        "oip_binary_over_predict": common.ratio(forms["oip-binary"]["throughput_rps"], predict),
        "per_round_ratios": per_round,
        "oip_json_over_predict_median_of_rounds": common.median(per_round["oip-json"]),
        "oip_binary_over_predict_median_of_rounds": common.median(per_round["oip-binary"]),
        "windows": windows,
    }
    path = common.write_results("oip", results)
    print(
        f"W1 closed loop, {options.connections} connections, median of {options.rounds} windows each "
        f"(load average before: {', '.join(f'{x:.2f}' for x in load_before)}):"
    )
    for form in FORMS:
        row = forms[form]
        ratio = common.ratio(row["throughput_rps"], predict)
        print(
            f"  {form:<11} {common.format_number(row['throughput_rps'])} req/s  "
            f"p50 {common.format_number(row['p50_us'])} us  p99 {common.format_number(row['p99_us'])} us  "
            f"x predict {common.format_number(ratio, 3)}  non-200 {row['answers_not_200']}  "
            f"defaults {row['default_answers']}"
        )
    for form in FORMS[1:]:
        ratio = common.median(per_round[form])
        verdict = "met" if ratio is not None and ratio >= 0.9 else "NOT met"
        print(
            f"  {form} / predict, median of per-round ratios: {common.format_number(ratio, 3)} "
            f"(target >= 0.9: {verdict})"
        )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
