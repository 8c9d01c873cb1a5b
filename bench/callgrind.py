"""Counting instructions of several running processes with callgrind over several windows, for cost
figures that a shared, noisy machine cannot disturb (instructions, not time). bench/callgrind_frontend.py
runs one frontend for one window; this is for a frontend and its replicas measured window after window
(bench/selection_cost.py), where instrumentation stays on and each window zeroes, then dumps.

Owns: the valgrind command prefix that starts a process uninstrumented, switching instrumentation on
and off for a measured window (callgrind_control), dumping, and summing the instructions each process
executed in each window from its dump files. A process started with `command_prefix(dumps, "x")`
writes `<dumps>/x.<pid>.<n>` for its n-th dump; `dump(pids)` ends a window for every pid given.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def command_prefix(dump_dir: Path, label: str) -> list[str]:
    """valgrind's arguments before the program's: callgrind, instrumentation off until switched on."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--collect-systime=yes",  # system calls counted too (sysCount): per-batch wake-ups are there
        f"--callgrind-out-file={dump_dir / label}.%p",
    ]


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


def _events_of(dump_file: Path) -> dict[str, int]:
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
    return _events_of(path) if path.exists() else {}
