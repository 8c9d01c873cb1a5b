"""The prediction cache study: the hit path against nginx, and Zipf-distributed inputs at several
cache sizes.

Owns both parts' procedure, summary, plots and bench/results/cache.json. The model behind the cache
is W3's (models.CalibratedBurner: ~1 ms per call + ~20 us per input of CPU work, adaptive
batching), so a miss costs a model evaluation and a hit does not. Runs on the main thread (/metrics
sampled on one background thread); about one and a half minutes with the defaults. nginx and every
cluster are stopped at the end, also on errors.

  hit path   one fixed body, answered from the cache after the first query, against nginx's fixed
             200 answer, in the same run: closed loop with --connections (throughput and p99),
             closed loop with one connection (unloaded latency), open loop at --rate (p99). The
             engine's cache counters confirm the queries were hits. Reference for what the hit
             saves: the same body with the cache off (every query evaluated, batched).
  zipf       loadgen --zipf-keys K --zipf-s S (K distinct 10-double vectors with Zipf popularity),
             closed loop, one fresh cluster per cache size (the size is set at start); reports the
             hit rate (engine counters, measured window only, after a warm-up), throughput and p99.

    python bench/cache_bench.py
    python bench/cache_bench.py --cache-sizes-kib 0 64 1024 --zipf-keys 100000 --zipf-s 1.1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster as cluster_lib
import common
import models

APP = "cache"
MODEL = "w3-burner"
HIT_BODY = json.dumps({"input": [float(i) / 8 for i in range(10)]}, separators=(",", ":"))
NOISY_OTHER_CORES = 0.2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    parser.add_argument(
        "--zipf-warmup", type=float, default=2.0, help="unmeasured seconds of a Zipf run (fills it)"
    )
    parser.add_argument("--connections", type=int, default=64, help="closed loop connections")
    parser.add_argument(
        "--rate", type=float, default=20000.0, help="hit path open loop rate (default 20000)"
    )
    parser.add_argument("--open-connections", type=int, default=64)
    parser.add_argument(
        "--slo-micros", type=int, default=100_000, help="the app's SLO (default 100 ms)"
    )
    parser.add_argument(
        "--hit-cache-size-bytes",
        type=int,
        default=32 * 2**20,
        help="cache of the hit path cluster (default 32 MiB)",
    )
    parser.add_argument(
        "--cache-sizes-kib",
        type=int,
        nargs="+",
        default=[0, 16, 128, 512, 4096],
        help="Zipf part's cache sizes in KiB (0 = off; default 0 16 128 512 4096). An entry of "
        "this model costs 193 bytes (clipper_cache_bytes / clipper_cache_entries)",
    )
    parser.add_argument("--zipf-keys", type=int, default=10_000, help="distinct inputs (10,000)")
    parser.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    parser.add_argument("--seed", type=int, default=7, help="loadgen seed: the same keys each run")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument(
        "--parts", nargs="+", choices=("hit", "zipf"), default=["hit", "zipf"], help="what to run"
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "cache.json")
    return parser.parse_args(argv)


def deploy_model(
    stack: contextlib.ExitStack,
    label: str,
    cache_size_bytes: int,
    args: argparse.Namespace,
    calibration_path: str,
) -> cluster_lib.LocalCluster:
    from clipper.deployers.python import deploy_python_closure

    cluster = cluster_lib.start_local_cluster(stack, label, cache_size_bytes)
    connection = cluster.connection
    connection.register_application(APP, "doubles", "-1", args.slo_micros)
    deploy_python_closure(
        connection,
        name=MODEL,
        version="1",
        input_type="doubles",
        func=models.CalibratedBurner(report_path=calibration_path),
        batch_size=-1,
    )
    connection.link_model_to_app(APP, MODEL)
    cluster_lib.wait_for_model_answer(
        cluster.url(APP), lambda i: {"input": [float(i) + 0.25] + [0.0] * 9}
    )
    return cluster


def measure(
    loadgen: str,
    url: str,
    server_pids: Any,
    args: argparse.Namespace,
    *,
    connections: int,
    rate: float | None = None,
    warmup: float | None = None,
    body: str | None = HIT_BODY,
    zipf: bool = False,
    sampler: cluster_lib.MetricsSampler | None = None,
) -> dict[str, Any]:
    warmup = args.warmup if warmup is None else warmup
    extra = ["--drain", "1", "--seed", str(args.seed)]
    if zipf:
        extra += ["--zipf-keys", str(args.zipf_keys), "--zipf-s", str(args.zipf_s)]
    command = common.loadgen_command(
        loadgen,
        url,
        connections=connections,
        duration_seconds=args.duration,
        warmup_seconds=warmup,
        rate_per_second=rate,
        workload="none" if zipf else "fixed",
        body=body,
        extra_args=extra,
    )
    started = time.monotonic()
    with common.CpuMeter(server_pids) as cpu:
        run = common.run_loadgen(command, timeout_seconds=warmup + args.duration + 30)
    report = run.report
    latency = report["latency_us"]
    record: dict[str, Any] = {
        "throughput_rps": report["throughput_rps"],
        "p50_us": latency.get("p50"),
        "p99_us": latency.get("p99"),
        "p999_us": latency.get("p999"),
        "default_answers": report["default_answers"],
        "errors": report["errors"]["total"] + report.get("non_2xx", 0),
        "unfinished": report.get("unfinished", 0) + report.get("lost", 0),
        "cpu_cores": cpu.summary(),
        "loadgen": run.to_json(),
    }
    if sampler is not None:
        start, end = started + warmup, started + warmup + args.duration
        hits = sampler.delta("clipper_cache_hits_total", start, end)
        misses = sampler.delta("clipper_cache_misses_total", start, end)
        model = cluster_lib.model_labels(MODEL, "1")
        record["engine"] = {
            "cache_hits": hits,
            "cache_misses": misses,
            "cache_coalesced": sampler.delta("clipper_cache_coalesced_total", start, end),
            "cache_evictions": sampler.delta("clipper_cache_evictions_total", start, end),
            "cache_entries_end": round(sampler.value("clipper_cache_entries", end)),
            "cache_bytes_end": round(sampler.value("clipper_cache_bytes", end)),
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "model_predictions_per_s": round(
                sampler.delta(f"clipper_model_predictions_total{{{model}}}", start, end)
                / args.duration,
                1,
            ),
            "mean_batch_size": sampler.histogram_mean(
                "clipper_model_batch_size", model, start, end
            ),
        }
    return record


def hit_path(
    args: argparse.Namespace, loadgen: str, calibration_path: str
) -> dict[str, dict[str, Any]]:
    """{scenario: {target: record}} for nginx, Clipper's hit path and Clipper with the cache off."""
    scenarios = {
        f"closed_{args.connections}": {"connections": args.connections},
        "closed_1": {"connections": 1},
        f"open_{args.rate:.0f}": {"connections": args.open_connections, "rate": args.rate},
    }
    results: dict[str, dict[str, Any]] = {key: {} for key in scenarios}
    with contextlib.ExitStack() as stack:
        nginx = common.NginxServer(port=common.free_port(), workers=args.nginx_workers)
        nginx.start()
        stack.callback(nginx.stop)
        print("hit path: starting Clipper (cache on) ...", file=sys.stderr)
        cached = deploy_model(stack, "cache-hit", args.hit_cache_size_bytes, args, calibration_path)
        sampler = stack.enter_context(cluster_lib.MetricsSampler(cached.metrics_url))
        status, body = common.post_json(cached.url(APP), json.loads(HIT_BODY))
        if status != 200 or not isinstance(body, dict) or body.get("default"):
            raise RuntimeError(f"the hit path's first query was not answered by the model: {body}")
        nginx_url = nginx.url + f"{APP}/predict"
        for key, settings in scenarios.items():
            for name, url, pids, metrics in (
                ("nginx", nginx_url, lambda: [nginx.pid, *common.children_of(nginx.pid)], None),
                ("clipper_hit", cached.url(APP), cached.server_pids, sampler),
            ):
                print(f"  {key} -> {name}", file=sys.stderr)
                results[key][name] = measure(loadgen, url, pids, args, sampler=metrics, **settings)
        # The reference for what a hit saves: the same body evaluated every time.
        print("hit path: starting Clipper (cache off) ...", file=sys.stderr)
        uncached = deploy_model(stack, "cache-off", 0, args, calibration_path)
        off_sampler = stack.enter_context(cluster_lib.MetricsSampler(uncached.metrics_url))
        key = f"closed_{args.connections}"
        print(f"  {key} -> clipper_cache_off", file=sys.stderr)
        results[key]["clipper_cache_off"] = measure(
            loadgen,
            uncached.url(APP),
            uncached.server_pids,
            args,
            sampler=off_sampler,
            connections=args.connections,
        )
    for rows in results.values():
        if "nginx" in rows and "clipper_hit" in rows:
            ours, reference = rows["clipper_hit"], rows["nginx"]
            rows["ratio_hit_to_nginx"] = {
                key: common.ratio(ours[key], reference[key])
                for key in ("throughput_rps", "p50_us", "p99_us", "p999_us")
            }
    return results


def zipf_sweep(
    args: argparse.Namespace, loadgen: str, calibration_path: str
) -> list[dict[str, Any]]:
    rows = []
    for size_kib in args.cache_sizes_kib:
        with contextlib.ExitStack() as stack:
            print(f"zipf: cache {size_kib} KiB ...", file=sys.stderr)
            cluster = deploy_model(
                stack, f"cache-zipf-{size_kib}", size_kib * 1024, args, calibration_path
            )
            sampler = stack.enter_context(cluster_lib.MetricsSampler(cluster.metrics_url))
            record = measure(
                loadgen,
                cluster.url(APP),
                cluster.server_pids,
                args,
                connections=args.connections,
                warmup=args.zipf_warmup,
                zipf=True,
                sampler=sampler,
            )
        rows.append({"cache_kib": size_kib, **record})
    return rows


def _ms(micros: float | None) -> str:
    return "-" if micros is None else f"{micros / 1000:.2f}"


def print_summary(
    header: str, hit: dict[str, dict[str, Any]], zipf: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    print(header)
    checks: list[dict[str, Any]] = []
    noisy: list[str] = []
    if hit:
        columns = (
            f"{'hit path':<14}{'target':<19}{'req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>9}"
            f"{'hit rate':>9}{'defaults':>9}{'other':>7}"
        )
        print(columns)
        print("-" * len(columns))
        for key, rows in hit.items():
            label = key
            for name in ("nginx", "clipper_hit", "clipper_cache_off"):
                if name not in rows:
                    continue
                row = rows[name]
                rate = row.get("engine", {}).get("hit_rate")
                print(
                    f"{label:<14}{name:<19}{row['throughput_rps']:>10,.0f}{_ms(row['p50_us']):>8}"
                    f"{_ms(row['p99_us']):>8}{_ms(row['p999_us']):>9}"
                    f"{'-' if rate is None else f'{100 * rate:.1f}%':>9}"
                    f"{row['default_answers']:>9,}{row['cpu_cores']['other']:>7.2f}"
                )
                if row["cpu_cores"]["other"] > NOISY_OTHER_CORES:
                    noisy.append(f"{key}/{name}")
                label = ""
            ratio = rows.get("ratio_hit_to_nginx")
            if ratio:
                print(
                    f"{'':<14}{'hit / nginx':<19}{_x(ratio['throughput_rps']):>10}"
                    f"{_x(ratio['p50_us']):>8}{_x(ratio['p99_us']):>8}{_x(ratio['p999_us']):>9}"
                )
                for metric in ("throughput_rps", "p99_us"):
                    checks.append(
                        {
                            "check": f"{key} hit path / nginx {metric}",
                            "value": ratio[metric],
                            "goal": "(reported; no issue target)",
                            "met": None,
                        }
                    )
        print()
    if zipf:
        columns = (
            f"{'zipf cache':<12}{'req/s':>10}{'hit rate':>9}{'model in/s':>11}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'entries':>9}{'evictions':>10}{'other':>7}"
        )
        print(columns)
        print("-" * len(columns))
        for row in zipf:
            engine = row["engine"]
            rate = engine["hit_rate"]
            print(
                f"{str(row['cache_kib']) + ' KiB':<12}{row['throughput_rps']:>10,.0f}"
                f"{'-' if rate is None else f'{100 * rate:.1f}%':>9}"
                f"{engine['model_predictions_per_s']:>11,.0f}{_ms(row['p50_us']):>8}"
                f"{_ms(row['p99_us']):>8}{engine['cache_entries_end']:>9,.0f}"
                f"{engine['cache_evictions']:>10,.0f}{row['cpu_cores']['other']:>7.2f}"
            )
            if row["cpu_cores"]["other"] > NOISY_OTHER_CORES:
                noisy.append(f"zipf/{row['cache_kib']}KiB")
        base = zipf[0]["throughput_rps"] if zipf and zipf[0]["cache_kib"] == 0 else None
        if base:
            speedups = ", ".join(
                f"{row['cache_kib']} KiB {row['throughput_rps'] / base:.2f}x" for row in zipf[1:]
            )
            print(f"throughput against the cache off: {speedups}")
    print(
        "model in/s: inputs the model evaluated per second (misses); other: cores used outside "
        "the study."
    )
    if noisy:
        print(
            f"WARNING: other work used > {NOISY_OTHER_CORES} cores during {', '.join(noisy)}; "
            "those figures are disturbed: rerun on a quiet machine."
        )
    return checks


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def plot(
    hit: dict[str, dict[str, Any]], zipf: list[dict[str, Any]], args: argparse.Namespace
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    paths: list[Path] = []
    stem = args.output.stem
    if hit:
        figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4.2))
        closed_key = f"closed_{args.connections}"
        names = [n for n in ("nginx", "clipper_hit", "clipper_cache_off") if n in hit[closed_key]]
        colors = {"nginx": "C0", "clipper_hit": "C1", "clipper_cache_off": "C7"}
        values = [hit[closed_key][n]["throughput_rps"] for n in names]
        left.bar(names, values, color=[colors[n] for n in names])
        for index, value in enumerate(values):
            left.annotate(f"{value:,.0f}", (index, value), ha="center", va="bottom", fontsize=8)
        left.set_ylabel("requests / s")
        left.set_title(f"closed loop, {args.connections} connections: throughput", fontsize=10)
        for axis, metric, title in (
            (middle, "p50_us", "p50"),
            (right, "p99_us", "p99"),
        ):
            keys = list(hit)
            width = 0.8 / 3
            for offset, name in enumerate(("nginx", "clipper_hit", "clipper_cache_off")):
                xs = [i + (offset - 1) * width for i, k in enumerate(keys) if name in hit[k]]
                ys = [hit[k][name][metric] / 1000 for k in keys if name in hit[k]]
                if xs:
                    axis.bar(xs, ys, width, label=name, color=colors[name])
            axis.set_xticks(range(len(keys)), keys, fontsize=8)
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.yaxis.set_minor_formatter(ticker.NullFormatter())
            axis.set_ylabel("ms (log)")
            axis.set_title(f"{title} latency", fontsize=10)
            axis.legend(fontsize=7)
            axis.grid(alpha=0.3, axis="y", which="both")
        figure.suptitle("Prediction cache hit path against nginx (same body every request)")
        paths.append(common.save_figure(figure, args.output.with_name(f"{stem}_hit_path.png")))
    if zipf:
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        labels = [f"{row['cache_kib']}" if row["cache_kib"] else "0 (off)" for row in zipf]
        xs = range(len(zipf))
        left.bar(xs, [100 * (row["engine"]["hit_rate"] or 0) for row in zipf], color="C2")
        left.set_xticks(xs, labels)
        left.set_xlabel("cache size (KiB)")
        left.set_ylabel("hit rate (%)")
        left.set_ylim(0, 100)
        left.set_title("hit rate (measured window, after warm-up)", fontsize=10)
        right.plot(xs, [row["throughput_rps"] for row in zipf], "o-", color="C1", label="req/s")
        right.set_xticks(xs, labels)
        right.set_xlabel("cache size (KiB)")
        right.set_ylabel("requests / s")
        right.set_ylim(bottom=0)
        twin = right.twinx()
        twin.plot(xs, [row["p99_us"] / 1000 for row in zipf], "s--", color="C3", label="p99 ms")
        twin.set_ylabel("p99 (ms)")
        twin.set_ylim(bottom=0)
        lines = right.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        right.legend(
            lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=8, loc="lower right"
        )
        right.set_title("throughput and p99, closed loop", fontsize=10)
        for axis in (left, right):
            axis.grid(alpha=0.3)
        figure.suptitle(
            f"Zipf inputs: {args.zipf_keys:,} keys, s={args.zipf_s:g}, {args.connections} "
            "connections, W3 model behind the cache"
        )
        paths.append(common.save_figure(figure, args.output.with_name(f"{stem}_zipf.png")))
    return paths


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, loadgen = common.begin_loadgen_study(args.loadgen)
    models.register_by_value()
    with tempfile.TemporaryDirectory(prefix="clipper-bench-cache-") as scratch:
        calibration_path = os.path.join(scratch, "calibration")
        hit = hit_path(args, loadgen, calibration_path) if "hit" in args.parts else {}
        zipf = zipf_sweep(args, loadgen, calibration_path) if "zipf" in args.parts else []
        calibration = models.read_calibration_reports(calibration_path)
    header = (
        f"Prediction cache | W3 model behind it | nginx worker_processes={args.nginx_workers} | "
        f"{os.cpu_count()} CPUs | {args.duration:g} s runs | SLO {args.slo_micros / 1000:g} ms"
    )
    checks = print_summary(header, hit, zipf)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plots = plot(hit, zipf, args)
    payload = {
        "study": "cache",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": common.machine_info(),
        "source": cluster_lib.source_revision(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loadgen": loadgen,
        "model_calibration": calibration,
        "hit_path": hit,
        "zipf": zipf,
        "checks": checks,
        "plots": [str(path) for path in plots],
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"\nwrote {path} ({payload['wall_seconds']} s)")
    for plot_path in plots:
        print(f"plot: {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
