"""clipper.cpu_placement: the CPU list syntax and applying it to a process (a real child process,
read back from the kernel's /proc)."""

import os
import subprocess
import sys

import pytest

from clipper.cpu_placement import check_available, format_cpus, parse_cpus
from clipper.exceptions import ClipperException


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("2-3", {2, 3}), ("0,2-4", {0, 2, 3, 4}), (" 1 , 3 ", {1, 3}), ("5-5", {5})],
)
def test_cpu_lists_parse_as_taskset_writes_them(text, cpus):
    assert parse_cpus(text) == cpus
    assert parse_cpus(format_cpus(cpus)) == cpus


def test_cpu_lists_format_shortest():
    assert format_cpus([3, 0, 1, 2, 7]) == "0-3,7"
    assert format_cpus({4}) == "4"
    assert parse_cpus([1, 2]) == {1, 2}


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1.5"])
def test_malformed_cpu_lists_are_refused_with_the_syntax(text):
    with pytest.raises(ClipperException, match="CPU list"):
        parse_cpus(text)


def test_cpus_the_process_may_not_use_are_refused_by_name():
    beyond = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ClipperException, match=f"CPU\\(s\\) {beyond} are not available"):
        check_available(frozenset({beyond}), "frontend_cpus")


def test_apply_cpus_confines_the_process_and_the_threads_it_starts_later():
    cpu = min(os.sched_getaffinity(0))
    script = (
        "import threading, time, os\n"
        "from clipper.cpu_placement import apply_cpus\n"
        f"apply_cpus('{cpu}', 'test')\n"
        "threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
        "tasks = os.listdir('/proc/self/task')\n"
        "lists = {open(f'/proc/self/task/{t}/status').read().split('Cpus_allowed_list:')[1].split()[0] for t in tasks}\n"
        "print(len(tasks), sorted(lists))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert int(output[0]) >= 2
    assert output[1].strip() == f"['{cpu}']"
