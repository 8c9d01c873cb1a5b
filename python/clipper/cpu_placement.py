"""CPU placement: which CPUs a process of the cluster (the frontend, a local replica) may run on.

A CPU-bound model that shares a CPU with the frontend takes that CPU from the I/O thread that reads
and refuses queries, so under overload the frontend cannot even refuse in time (docs/admission.md).
Giving each its own CPUs is a deployment rule; this module owns the CPU list syntax ("0", "0-1,3",
as `taskset -c` and Docker's --cpuset-cpus write it) and applying a list to the calling process with
sched_setaffinity (each thread has its own mask, inherited at creation: every thread is set).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from clipper.exceptions import ClipperException

CpuSpec = str | Iterable[int]


def parse_cpus(spec: CpuSpec) -> frozenset[int]:
    """The CPUs of a list like "0-1,3" (or an iterable of CPU numbers); raises ClipperException."""
    if not isinstance(spec, str):
        cpus = frozenset(int(cpu) for cpu in spec)
    else:
        cpus = set()
        for part in spec.replace(" ", "").split(","):
            first, dash, last = part.partition("-")
            if (
                not first.isdigit()
                or (dash and not last.isdigit())
                or (last.isdigit() and int(last) < int(first))
            ):
                raise ClipperException(
                    f"CPU list {spec!r} is not valid: use CPU numbers and ranges like '0', '2-3' or '0,2-3'"
                )
            cpus.update(range(int(first), int(last or first) + 1))
        cpus = frozenset(cpus)
    if not cpus or min(cpus) < 0:
        raise ClipperException(f"CPU list {spec!r} names no CPU")
    return cpus


def format_cpus(cpus: Iterable[int]) -> str:
    """The shortest list syntax for `cpus` ({0, 1, 3} -> "0-1,3")."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = previous = None
    for cpu in [*ordered, None]:
        if start is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(parts)


def check_available(cpus: frozenset[int], what: str) -> None:
    """Raise ClipperException unless this process may run on every CPU of `cpus` (a child can only
    narrow the set it inherits within its cgroup's cpuset)."""
    allowed = os.sched_getaffinity(0)
    missing = sorted(cpus - allowed)
    if missing:
        raise ClipperException(
            f"{what}: CPU(s) {format_cpus(missing)} are not available to this process "
            f"(it may use {format_cpus(allowed)})"
        )


def apply_cpus(spec: CpuSpec, what: str) -> frozenset[int]:
    """Restrict the calling process to `spec`'s CPUs: every thread it has (imports may have started
    some, e.g. a BLAS pool) and, inherited, every thread it starts afterwards."""
    cpus = parse_cpus(spec)
    # Not checked against this process's own mask: one started by a pinned parent (a replica the
    # pinned frontend restarts) may widen it to any CPU its cgroup allows.
    try:
        os.sched_setaffinity(0, cpus)
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task), cpus)
    except OSError as error:
        raise ClipperException(
            f"{what}: cannot run on CPU(s) {format_cpus(cpus)}: {error}"
        ) from error
    applied = os.sched_getaffinity(0)
    if applied != cpus:  # the kernel keeps only the CPUs the cgroup allows
        raise ClipperException(
            f"{what}: asked for CPU(s) {format_cpus(cpus)}, the system allows {format_cpus(applied)}"
        )
    return cpus
