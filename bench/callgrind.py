"""Counting what running processes execute with valgrind's callgrind, for cost figures that a shared,
noisy machine cannot disturb (instructions and system calls, not time).

Owns the callgrind side of every cost study: the valgrind command prefix that starts a process
uninstrumented, window control (callgrind_control: instrumentation on, zero, dump), and reading the
dumps (one dump's events, or the instructions and system calls summed over a process's dumps). A
process started with `command_prefix(dumps, "x")` writes `<dumps>/x.<pid>.<n>` for its n-th dump.

valgrind 3.19 gets the summary of a dump taken after instrumentation was switched off and on again
wrong (negative, or a few hundred instructions where the dump's cost lines add up to 140,000), so
instrumentation is switched on once per process and never back on: each window zeroes, runs, dumps
(`window`), window after window (bench/selection_cost.py) or once (bench/callgrind_frontend.py).
The figures are the dumps' `summary:` lines. After a zero, a dump's `totals:` (its cost lines added
up) can exceed its summary, by up to ~1% of the instructions and more of the system calls of an idle
frontend; the summaries stay steady window after window, the totals do not.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def command_prefix(dump_dir: Path, label: str, collect_systime: bool = True) -> list[str]:
    """valgrind's arguments before the program's: callgrind, instrumentation off until switched on."""
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    if collect_systime:
        prefix.append("--collect-systime=yes")  # system calls too (sysCount): per-batch wake-ups
    return [*prefix, f"--callgrind-out-file={dump_dir / label}.%p"]


def _control(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments], check=True, capture_output=True, timeout=120)


def instrument(pids: list[int], on: bool) -> None:
    for pid in pids:
        _control("-i", "on" if on else "off", str(pid))


def zero(pids: list[int]) -> None:
    """Zeroes each process's counts: a window starts here."""
    for pid in pids:
        _control("-z", str(pid))


def dump(pids: list[int]) -> None:
    """Writes each process's counts since its last dump (or since the start) and zeroes them."""
    for pid in pids:
        _control("-d", str(pid))


def window(pids: list[int], run: Callable[[], T]) -> tuple[T, float]:
    """Runs `run()` as one measured window of every process in `pids` (instrumentation on): zeroes,
    runs, dumps. Returns run's result and the window's seconds."""
    zero(pids)
    started = time.monotonic()
    result = run()
    dump(pids)
    return result, time.monotonic() - started


def events_of(dump_file: Path) -> dict[str, int]:
    """The events one dump file recorded (its `summary:` line, which comes first, else `totals:`)."""
    events: list[str] = []
    for line in dump_file.read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            return dict(zip(events or ["Ir"], map(int, line.split()[1:]), strict=False))
    return {}


def events_of_dump(dump_dir: Path, label: str, pid: int, number: int) -> dict[str, int]:
    """The events (Ir: instructions, sysCount: system calls) in `pid`'s `number`-th dump (1 = the
    first callgrind_control -d); empty when there is no such dump."""
    path = dump_dir / f"{label}.{pid}.{number}"
    return events_of(path) if path.exists() else {}


def dump_files(dump_dir: Path, label: str) -> list[Path]:
    """Every dump written under `label` (any process, any number), in name order."""
    return sorted(dump_dir.glob(label + "*"))


@dataclass
class DumpTotals:
    """What the dumps under one label recorded, summed over the dumps."""

    instructions: int = 0
    system_calls: int = 0  # only with --collect-systime (the `sysCount` event)
    # clock_gettime is a vDSO call natively (no kernel entry), a system call only under valgrind.
    clock_gettime_calls: int = 0

    @property
    def kernel_calls(self) -> int:
        """System calls that enter the kernel natively too."""
        return self.system_calls - self.clock_gettime_calls


def dump_totals(dump_dir: Path, label: str) -> DumpTotals:
    """Sums the events of every dump written under `label`."""
    totals = DumpTotals()
    for dump_file in dump_files(dump_dir, label):
        values = events_of(dump_file)
        totals.instructions += values.get("Ir", 0)
        totals.system_calls += values.get("sysCount", 0)
        if values.get("sysCount"):
            totals.clock_gettime_calls += _self_system_calls(dump_file, "clock_gettime")
    return totals


def _self_system_calls(dump_file: Path, function: str) -> int:
    """System calls made by `function` itself in one dump, read from callgrind_annotate's table."""
    table = subprocess.run(
        ["callgrind_annotate", "--sort=sysCount", "--threshold=100", str(dump_file)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    calls = 0
    for line in table.splitlines():
        if f":{function}" in line:
            # "   833,224 ( 0.17%) 83,322 (60.48%) ...": the second count is sysCount.
            counts = re.findall(r"([\d,]+) \(", line)
            if len(counts) >= 2:
                calls += int(counts[1].replace(",", ""))
    return calls
