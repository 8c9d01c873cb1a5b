"""Instructions a shared-memory replica executes per batch in user space (issue 13), counted by
callgrind, so the figure holds on a busy machine.

The replica is the real one: a ModelServer serving a ClosureModel (W1's no-op, `["0"] * len(xs)`)
through its real serving loop (`ModelServer._serve`) over a real memfd channel (ShmChannel). This
script stands in for the frontend: it lays out the mapping, publishes N W1 requests (one input of
ten doubles each) into the request ring up front, and keeps `consumer_sleeping` clear on the
response ring, so the replica answers batch after batch without sleeping and without doorbells
(their system calls and wake-ups are counted under load by bench/replica_cost.py). The last batch's
model call asks the server to stop.

Each interpreter given (--python, default this one: e.g. another tree's venv for an A/B in one run)
runs the worker under callgrind twice, with N1 and N2 batches; the difference over N2 - N1 is the
cost per batch, start-up excluded (`per_batch`). Publishing the N requests grows with N too (about
400 instructions a batch: the records' bytes built and copied into the mapping), so the worker also
runs twice without serving; `replica_per_batch` is `per_batch` less that (`publishing_per_batch`).

    python bench/micro/replica_batch_cost.py [--batches 500 2500] [--python PY [PY ...]]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER_BYTES = 4096
CAPACITY = 8 << 20
MAGIC, LAYOUT_VERSION = 0x314D48535050494C, 1
# ChannelHeader (cpp/rpc/shm_ring.h): magic, version, reserved, two capacities; then a RingControl
# (tail, head, consumer_sleeping, each on its own cache line) per ring.
REQUEST_TAIL = 64
RESPONSE_TAIL, RESPONSE_SLEEPING = 256, 256 + 128


def worker(batches: int, serve: bool = True) -> None:
    """Serves `batches` requests published up front, through the real serving loop (or only
    publishes them, when not `serve`: the stand-in's own share)."""
    import zmq
    from clipper.container._shm_ring import ShmChannel
    from wire_request import doubles_request  # bench/micro, this script's folder

    from clipper.container.closure import ClosureModel
    from clipper.container.server import ContainerOptions, ModelServer

    size = HEADER_BYTES + 2 * CAPACITY
    memfd = os.memfd_create("replica-batch-cost")
    os.ftruncate(memfd, size)
    mapping = mmap.mmap(memfd, size)
    struct.pack_into("<QIIQQ", mapping, 0, MAGIC, LAYOUT_VERSION, 0, CAPACITY, CAPACITY)
    # One record repeated (the batch id does not matter here), written in one copy; what that costs
    # per batch is measured on its own (serve=False) and taken out of the replica's figure.
    payload = doubles_request(1, 10)  # W1's one input of ten doubles
    record = struct.pack("<I12x", len(payload)) + payload
    record += bytes(-len(record) % 64)
    tail = len(record) * batches
    mapping[HEADER_BYTES : HEADER_BYTES + tail] = record * batches
    if tail > CAPACITY // 2:
        raise SystemExit(f"{batches} batches do not fit the stand-in's ring")
    struct.pack_into("<Q", mapping, REQUEST_TAIL, tail)
    struct.pack_into("<I", mapping, RESPONSE_SLEEPING, 0)  # the frontend never sleeps: no doorbell
    if not serve:
        mapping.close()
        os.close(memfd)
        return
    channel = ShmChannel(
        None,
        memfd,
        os.eventfd(0, os.EFD_NONBLOCK),
        os.eventfd(0, os.EFD_NONBLOCK),
        CAPACITY,
        CAPACITY,
        0,
    )
    served = 0

    def no_op(inputs):
        nonlocal served
        served += 1
        if served == batches:
            server.stop()
        return ["0"] * len(inputs)

    server = ModelServer(
        ClosureModel(no_op),
        ContainerOptions(model_name="m", model_version="1", input_type="doubles"),
    )
    server._channel = channel
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.bind(f"inproc://replica-batch-cost-{os.getpid()}")
    server._serve(socket)
    if served != batches:
        raise SystemExit(f"served {served} of {batches} batches")
    response_tail = struct.unpack_from("<Q", mapping, RESPONSE_TAIL)[0]
    if response_tail == 0:
        raise SystemExit("no answer went into the response ring")
    socket.close(0)
    context.term()
    channel.close()


def instructions(python: str, batches: int, serve: bool = True) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                python,
                __file__,
                "--worker" if serve else "--publish-only",
                str(batches),
            ],
            check=True,
            # One BLAS thread: idle OpenBLAS workers spin for a while, counting instructions that
            # depend on time; a fixed hash seed keeps dict and set layouts the same run to run.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        match = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError("callgrind wrote no summary")
        return int(match.group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--publish-only", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, nargs=2, default=[500, 2500], metavar=("N1", "N2"))
    parser.add_argument("--python", nargs="+", default=[sys.executable])
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker)
        return 0
    if args.publish_only is not None:
        worker(args.publish_only, serve=False)
        return 0
    low, high = args.batches
    if not 0 < low < high:
        parser.error("--batches needs 0 < N1 < N2")
    results = {}
    for python in args.python:
        counts = [instructions(python, low), instructions(python, high)]
        publishing = [instructions(python, low, False), instructions(python, high, False)]
        per_batch = (counts[1] - counts[0]) / (high - low)
        publishing_per_batch = (publishing[1] - publishing[0]) / (high - low)
        results[python] = {
            "instructions": counts,
            "per_batch": round(per_batch),
            "publishing_instructions": publishing,
            "publishing_per_batch": round(publishing_per_batch),
            "replica_per_batch": round(per_batch - publishing_per_batch),
        }
    print(json.dumps({"batches": [low, high], "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
