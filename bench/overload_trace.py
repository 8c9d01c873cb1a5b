"""bench/overload.py with a trajectory: every 50 ms of each run, the model's batching state (AIMD
batch size, back-offs, queue length, what admission control estimates with: the latency of one input
and of a full batch, the latest sent batch, the correction) and one probe query's answer (200, or
429 with the wait admission estimated). It shows how a run gets into and out of a state such as
issue 12's collapse (admission refusing at an empty queue, batches of a few inputs). Same arguments
as bench/overload.py, plus --trace (JSON lines, one per sample); after the runs, one line per run,
over its measured window (the samples after --warmup): the correction's maximum and mean, the queue's
minimum and median, the smallest AIMD batch size and the probes refused at an empty queue. Issue 12's
light model at 2x (about a minute):

  python bench/overload_trace.py --scenarios cpu --placements isolated --multipliers 2 2 2 \\
      --default-at 0 --trace bench/results/overload_trace_light.jsonl \\
      --output bench/results/overload_trace_light.json

  python bench/overload_trace.py --scenarios cpu --placements isolated --multipliers 1 2 2 2 \\
      --per-input-micros 200 --trace bench/results/overload_trace.jsonl \\
      --output bench/results/overload_trace.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overload

PROBE_INTERVAL_S = 0.05
ESTIMATE = re.compile(r"would answer in about (\d+) us")


def sample(study: Any, url: str) -> dict[str, Any]:
    """One sample: the batching state and one probe query."""
    record: dict[str, Any] = {}
    engine = study.cluster.connection.get_model_batching(overload.MODEL).get("engine") or {}
    replicas = engine.get("replicas") or [{}]
    record.update(
        queued=engine.get("queued"),
        batch_size=replicas[0].get("batch_size"),
        backoffs=replicas[0].get("backoffs"),
        recent_batch_latencies_micros=(replicas[0].get("recent_batch_latencies_micros") or [])[-4:],
        admission=engine.get("admission"),
    )
    body = json.dumps({"input": [1.0] * 10}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            record["probe"] = response.status
    except urllib.error.HTTPError as error:
        record["probe"] = error.code
        found = ESTIMATE.search(error.read().decode(errors="replace"))
        if found:
            record["estimated_wait_micros"] = int(found.group(1))
    return record


def summary(run: str, samples: list[dict[str, Any]], warmup_s: float) -> str:
    samples = [s for s in samples if s["t"] >= warmup_s]
    corrections = [(s.get("admission") or {}).get("correction", 1.0) for s in samples]
    sizes = [s["batch_size"] for s in samples if s.get("batch_size")]
    refused_empty = sum(1 for s in samples if s.get("queued") == 0 and s.get("probe") == 429)
    queued = sorted(s["queued"] for s in samples if s.get("queued") is not None)
    return (
        f"{run}: {len(samples)} samples, correction max {max(corrections, default=1):.2f} "
        f"mean {sum(corrections) / max(len(corrections), 1):.2f}, queue min "
        f"{queued[0] if queued else '-'} median {queued[len(queued) // 2] if queued else '-'}, "
        f"smallest AIMD batch "
        f"{min(sizes, default=0)}, probes refused at an empty queue {refused_empty}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--trace", type=Path, default=Path("bench/results/overload_trace.jsonl"))
    known, rest = parser.parse_known_args(argv)
    known.trace.parent.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    one_run = overload.one_run
    warmup_s = overload.parse_args(rest).warmup

    def traced_run(name, app, args, loadgen, study, rate):
        samples: list[dict[str, Any]] = []
        label = f"{study.name} {name} {app}"
        runs.append((label, samples))
        stop = threading.Event()

        def probe() -> None:
            started = time.monotonic()
            while not stop.is_set():
                record = {"run": label, "t": round(time.monotonic() - started, 3)}
                try:
                    record.update(sample(study, study.cluster.url(app)))
                except Exception as error:  # noqa: BLE001 (a failed sample is recorded, not fatal)
                    record["error"] = repr(error)
                samples.append(record)
                time.sleep(PROBE_INTERVAL_S)

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        try:
            return one_run(name, app, args, loadgen, study, rate)
        finally:
            stop.set()
            thread.join()

    overload.one_run = traced_run
    status = overload.main(rest)
    with known.trace.open("w") as out:
        for _, samples in runs:
            for record in samples:
                out.write(json.dumps(record) + "\n")
    for label, samples in runs:
        print(summary(label, samples, warmup_s))
    print(f"trace: {known.trace}")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
