"""Shared helpers for the benchmark scripts in bench/.

Owns: the nginx reference server (a generated config in a temp dir), locating/building and running
clipper-loadgen, reading a process's RSS from /proc, finding free ports and the process listening
on a port, and writing results JSON into bench/results/. It does not start Clipper (each study
does, through the public admin API). Everything runs on the caller's thread; RSS sampling uses one
background thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# `build/` is git-ignored at any depth: a loadgen built by the scripts never shows up as untracked.
LOADGEN_BUILD_DIR = BENCH_DIR / "build" / "loadgen"
NGINX_BINARY = "/usr/sbin/nginx"

# nginx answers every request with this body: the shape and size of a Clipper answer to a W1 query.
NGINX_BODY = '{"query_id":1000000,"output":0,"default":false}'


# --------------------------------------------------------------------------------------------------
# Ports and processes
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (held open together while choosing, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_port(port: int, timeout_seconds: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_seconds:.0f} s")


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` from /proc/<pid>/status (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/<pid>/task/*/children)."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{task}/children") as f,
            ):
                children.extend(int(child) for child in f.read().split())
    return children


def tree_rss_bytes(pid: int) -> int | None:
    """RSS of `pid` plus its direct children (nginx: master plus workers)."""
    own = rss_bytes(pid)
    if own is None:
        return None
    return own + sum(rss_bytes(child) or 0 for child in children_of(pid))


def _listening_socket_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table, encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(inode)
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The process holding a listening socket on `port` (scans /proc/net/tcp and /proc/*/fd)."""
    inodes = _listening_socket_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError, ProcessLookupError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(FileNotFoundError, PermissionError, OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                        return int(entry)
    return None


def process_command_line(pid: int) -> str:
    with (
        contextlib.suppress(FileNotFoundError, ProcessLookupError),
        open(f"/proc/{pid}/cmdline", "rb") as f,
    ):
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


class RssSampler:
    """Samples a process's RSS every `interval_seconds` on a background thread (context manager)."""

    def __init__(
        self, pid: int, interval_seconds: float = 0.2, include_children: bool = False
    ) -> None:
        self.pid = pid
        self.interval_seconds = interval_seconds
        self.include_children = include_children
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-sampler-{pid}", daemon=True)

    def _read(self) -> int | None:
        return tree_rss_bytes(self.pid) if self.include_children else rss_bytes(self.pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval_seconds)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"max_mb": None, "median_mb": None, "samples": 0}
        return {
            "max_mb": round(max(self.samples) / 2**20, 1),
            "median_mb": round(statistics.median(self.samples) / 2**20, 1),
            "samples": len(self.samples),
        }


def descendants_of(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, grandchildren, ...)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children_of(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # After "pid (comm)": state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def _system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    # Interrupt time is included: without CONFIG_IRQ_TIME_ACCOUNTING (as on this VM) it is also
    # charged to the process it interrupted, e.g. loopback TCP to the sender, so per-process times
    # include it. (With that option set, the study's own softirqs would show up as "other".)
    busy = (user + nice + system + irq + softirq) / CLOCK_TICKS_PER_SECOND
    return busy, steal / CLOCK_TICKS_PER_SECOND


@dataclass
class _CpuSnapshot:
    when: float
    system_busy: float
    system_steal: float
    ours: dict[int, float]
    server: dict[int, float]
    reaped_children: float


class CpuMeter:
    """CPU used during a block, in cores: by the machine's processes, by this script's process tree
    (servers, load generator, replicas), by the server under test, and by everything else ("other":
    the noise from other work on a shared machine). Context manager; read `summary()` afterwards."""

    def __init__(self, server_pids: Callable[[], list[int]]) -> None:
        self.server_pids = server_pids
        self._start: _CpuSnapshot | None = None
        self._end: _CpuSnapshot | None = None

    def _snapshot(self) -> _CpuSnapshot:
        busy, steal = _system_cpu_seconds()
        ours_pids = [os.getpid(), *descendants_of(os.getpid())]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)

        def cpu_of(pids: list[int]) -> dict[int, float]:
            seconds = {pid: process_cpu_seconds(pid) for pid in pids}
            return {pid: value for pid, value in seconds.items() if value is not None}

        return _CpuSnapshot(
            when=time.monotonic(),
            system_busy=busy,
            system_steal=steal,
            ours=cpu_of(ours_pids),
            server=cpu_of(self.server_pids()),
            reaped_children=children.ru_utime + children.ru_stime,
        )

    def __enter__(self) -> Self:
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = self._snapshot()

    @staticmethod
    def _delta(start: dict[int, float], end: dict[int, float]) -> float:
        # Processes born during the block count from zero; those that ended are in reaped_children.
        return sum(value - start.get(pid, 0.0) for pid, value in end.items())

    def summary(self) -> dict[str, float]:
        assert self._start is not None and self._end is not None, (
            "use CpuMeter as a context manager"
        )
        start, end = self._start, self._end
        elapsed = max(end.when - start.when, 1e-9)
        reaped = end.reaped_children - start.reaped_children
        system = (end.system_busy - start.system_busy) / elapsed
        ours = (self._delta(start.ours, end.ours) + reaped) / elapsed
        return {
            "system": round(system, 2),
            "ours": round(ours, 2),
            "server": round(self._delta(start.server, end.server) / elapsed, 2),
            "loadgen": round(reaped / elapsed, 2),
            "other": round(max(0.0, system - ours), 2),
            "steal": round((end.system_steal - start.system_steal) / elapsed, 2),
        }


# --------------------------------------------------------------------------------------------------
# CPU placement
# --------------------------------------------------------------------------------------------------


def parse_cpus(text: str) -> set[int]:
    """"0", "0,2" or "1-3" -> a set of CPU numbers (taskset's list syntax, clipper.cpu_placement's)."""
    from clipper.cpu_placement import parse_cpus as parse

    return set(parse(text))


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Runs the block with this thread confined to `cpus`; processes it starts inherit the set.

    Used to place a server under test (and everything it spawns) apart from the load generator.
    None leaves placement to the kernel.
    """
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def megabytes(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


# --------------------------------------------------------------------------------------------------
# nginx, the reference server
# --------------------------------------------------------------------------------------------------


def _terminate_with_parent() -> None:
    """In the child before exec: ask for SIGTERM when the script dies, so no nginx is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


NGINX_CONFIG_TEMPLATE = """\
# Generated by bench/common.py: a fixed 200 JSON answer on 127.0.0.1:{port}, the reference for W1.
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections {worker_connections};
    use epoll;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Keep-alive connections live as long as the benchmark; nginx would otherwise close them after
    # 1,000 requests or 75 s, and reconnects would be measured instead of answers.
    keepalive_timeout 3600s;
    keepalive_requests 4294967295;
    client_body_buffer_size 16k;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


@dataclass
class NginxServer:
    """nginx in the foreground (`daemon off`) with a generated config in its own temp dir."""

    port: int
    workers: int = 1
    worker_connections: int = 16384
    body: str = NGINX_BODY
    binary: str = NGINX_BINARY
    process: subprocess.Popen[bytes] | None = None
    temp_dir: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        assert self.process is not None, "nginx is not running; call start() first"
        return self.process.pid

    def start(self, timeout_seconds: float = 10.0) -> NginxServer:
        if not os.path.exists(self.binary):
            raise FileNotFoundError(
                f"{self.binary} not found; install it with: apt-get install nginx-light"
            )
        self.temp_dir = tempfile.mkdtemp(prefix="clipper-bench-nginx-")
        config_path = os.path.join(self.temp_dir, "nginx.conf")
        with open(config_path, "w", encoding="ascii") as config:
            config.write(
                NGINX_CONFIG_TEMPLATE.format(
                    port=self.port,
                    workers=self.workers,
                    worker_connections=self.worker_connections,
                    nofile=self.worker_connections * 2 + 64,
                    tmp=self.temp_dir,
                    body=self.body.replace("'", "\\'"),
                )
            )
        # Workers started by root drop to an unprivileged user; they must still reach the temp dir.
        os.chmod(self.temp_dir, 0o755)
        self.process = subprocess.Popen(
            [self.binary, "-p", self.temp_dir, "-c", config_path, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # error_log goes to the temp dir; see error_log()
            start_new_session=True,  # Ctrl-C reaches the script, which stops nginx itself
            # Only async-signal-safe work in the child (one prctl); nginx starts before threads do.
            preexec_fn=_terminate_with_parent,  # noqa: PLW1509
        )
        try:
            wait_for_port(self.port, timeout_seconds)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"nginx did not start on port {self.port}: {self.error_log()}"
            ) from None
        return self

    def error_log(self) -> str:
        if self.temp_dir is None:
            return ""
        with (
            contextlib.suppress(FileNotFoundError),
            open(os.path.join(self.temp_dir, "error.log")) as log,
        ):
            return log.read()[-2000:]
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: master waits for its workers
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# clipper-loadgen
# --------------------------------------------------------------------------------------------------


def _installed_loadgen() -> str | None:
    with contextlib.suppress(ImportError):
        import clipper_native  # optional: present once the package is installed

        for base in getattr(clipper_native, "__path__", []):
            candidate = os.path.join(base, "bin", "clipper-loadgen")
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def build_loadgen(build_dir: Path = LOADGEN_BUILD_DIR) -> str:
    """Builds bench/loadgen into `build_dir` with CMake (Release) and returns the binary's path."""
    source = BENCH_DIR / "loadgen"
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, stdout=subprocess.DEVNULL)
    return str(build_dir / "clipper-loadgen")


def find_loadgen(explicit: str | None = None, build_if_missing: bool = True) -> str:
    """The clipper-loadgen binary: `explicit`, $CLIPPER_LOADGEN, the installed one, PATH or a build.

    An installed binary older than bench/loadgen/loadgen.cc is skipped (it would miss recent flags);
    then a local build in bench/build/loadgen is used, and kept up to date by CMake.
    """
    for candidate in (explicit, os.environ.get("CLIPPER_LOADGEN")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    source = BENCH_DIR / "loadgen" / "loadgen.cc"
    source_mtime = source.stat().st_mtime if source.exists() else 0.0
    for candidate in (_installed_loadgen(), shutil.which("clipper-loadgen")):
        if (
            candidate
            and os.access(candidate, os.X_OK)
            and os.stat(candidate).st_mtime >= source_mtime
        ):
            return candidate
    if not build_if_missing:
        raise FileNotFoundError(
            "no up-to-date clipper-loadgen; build it with: python bench/common.py build-loadgen"
        )
    return build_loadgen()


@dataclass
class LoadgenRun:
    """The parsed JSON report of one clipper-loadgen run, plus its command line."""

    command: list[str]
    report: dict[str, Any]
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.report, **self.extra, "command": " ".join(self.command)}


def loadgen_command(
    loadgen: str,
    url: str,
    *,
    connections: int = 1,
    duration_seconds: float = 5.0,
    warmup_seconds: float = 1.0,
    rate_per_second: float | None = None,
    arrivals: str = "poisson",
    workload: str = "w1",
    body: str | None = None,
    method: str = "POST",
    hold_connections: int | None = None,
    source_addresses: int = 0,
    extra_args: list[str] | None = None,
) -> list[str]:
    """A clipper-loadgen command line. `source_addresses` > 0 spreads the connections over that many
    loopback client addresses (127.0.0.2 onwards), as a population of client hosts."""
    command = [loadgen, "--url", url, "--method", method, "--duration", str(duration_seconds)]
    if source_addresses:
        command += ["--source-addresses", str(source_addresses)]
    if hold_connections:
        command += ["--hold-connections", str(hold_connections)]
    else:
        command += ["--connections", str(connections), "--warmup", str(warmup_seconds)]
        if rate_per_second:
            command += ["--rate", str(rate_per_second), "--arrivals", arrivals]
    if workload == "w1":
        command.append("--w1")
    elif workload == "fixed":
        command += ["--body", body or ""]
    elif workload != "none":
        raise ValueError(f"workload must be w1, fixed or none, got {workload!r}")
    return command + list(extra_args or [])


def run_loadgen(
    command: list[str], timeout_seconds: float | None = None, cpus: set[int] | None = None
) -> LoadgenRun:
    """Runs clipper-loadgen to completion (on `cpus` when given) and parses its JSON report."""
    with pinned(cpus):
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_seconds, check=False
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"clipper-loadgen failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )
    return LoadgenRun(command=command, report=json.loads(completed.stdout), stderr=completed.stderr)


def run_loadgen_hold(
    command: list[str],
    rss_of: Any,
    settle_seconds: float = 1.0,
    timeout_seconds: float | None = None,
    cpus: set[int] | None = None,
) -> tuple[LoadgenRun, list[int]]:
    """Runs clipper-loadgen in hold mode; from `event=holding` on, samples `rss_of()` until it ends.

    Returns the run and the RSS samples (bytes) taken while the connections were held, starting
    `settle_seconds` after they were all open.
    """
    with pinned(cpus):
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    samples: list[int] = []
    stderr_lines: list[str] = []
    holding = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr_lines.append(line)
            if line.startswith("event=holding"):
                holding.set()

    reader = threading.Thread(target=read_stderr, name="loadgen-stderr", daemon=True)
    reader.start()
    deadline = time.monotonic() + (timeout_seconds or 3600)
    while process.poll() is None and not holding.is_set() and time.monotonic() < deadline:
        holding.wait(0.1)
    if holding.is_set():
        time.sleep(settle_seconds)
        while process.poll() is None and time.monotonic() < deadline:
            value = rss_of()
            if value is not None:
                samples.append(value)
            time.sleep(0.2)
    try:
        stdout, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, _ = process.communicate()
    reader.join(timeout=2)
    if process.returncode != 0:
        raise RuntimeError(
            f"clipper-loadgen failed (exit {process.returncode}): {''.join(stderr_lines).strip()}"
        )
    return LoadgenRun(
        command=command, report=json.loads(stdout), stderr="".join(stderr_lines)
    ), samples


# --------------------------------------------------------------------------------------------------
# HTTP probing, statistics and results
# --------------------------------------------------------------------------------------------------


def post_json(url: str, payload: Any, timeout_seconds: float = 5.0) -> tuple[int, Any]:
    """One POST with a JSON body; returns (status, parsed body or raw text)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# Cores used outside a study while it ran (the CpuMeter's `other`) above which its figures are marked
# disturbed.
NOISY_OTHER_CORES = 0.2


def disturbed_warning(other_cores: dict[str, float]) -> str | None:
    """The warning for the runs (name -> other cores) that other work disturbed, or None."""
    noisy = [name for name, cores in other_cores.items() if cores > NOISY_OTHER_CORES]
    if not noisy:
        return None
    return (
        f"WARNING: other work used > {NOISY_OTHER_CORES} cores during {', '.join(noisy)}; "
        "those figures are disturbed: rerun on a quiet machine."
    )


def loadgen_summary(report: dict[str, Any], command: list[str], keys: tuple[str, ...]) -> dict:
    """What a study keeps of a clipper-loadgen report: `keys`, the errors and the command line."""
    return {
        **{key: report.get(key) for key in keys},
        "unfinished": report.get("unfinished"),
        "errors": report.get("errors"),
        "command": " ".join(command),
    }


def begin_loadgen_study(explicit_loadgen: str | None) -> tuple[float, str]:
    """A loadgen study's opening: SIGTERM exits through the `with` blocks (so clusters stop), the
    start time for `elapsed_s`, and the clipper-loadgen binary (built if missing)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return time.monotonic(), find_loadgen(explicit_loadgen)


def save_figure(figure: Any, path: Path) -> Path:
    """Lays out, writes (110 dpi) and closes a matplotlib figure; returns `path`."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def add_window_options(parser: Any, seconds: float, rounds_help: str) -> None:
    """--rounds, --seconds and --connections of a study in alternating closed-loop windows."""
    parser.add_argument("--rounds", type=int, default=5, help=rounds_help)
    parser.add_argument("--seconds", type=float, default=seconds, help="length of each window")
    parser.add_argument("--connections", type=int, default=64)


def alternating_windows(commands: dict[str, list[str]], rounds: int) -> dict[str, list[dict]]:
    """Runs each named clipper-loadgen command once a round, the order rotated each round (so none
    always runs first, or right after the warm-up); returns each name's reports in round order. A
    round's windows run back to back: ratios between them cancel most of the machine's other work."""
    names = list(commands)
    windows: dict[str, list[dict]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            windows[name].append(run_loadgen(commands[name]).to_json())
    return windows


def windows_summary(windows: list[dict]) -> dict:
    """Medians of a series of loadgen windows' throughput, p50 and p99, and the answers that were
    not a model's 200 over all of them."""
    return {
        "throughput_rps": median([w.get("throughput_rps") for w in windows]),
        "p50_us": median([(w.get("latency_us") or {}).get("p50") for w in windows]),
        "p99_us": median([(w.get("latency_us") or {}).get("p99") for w in windows]),
        "answers_not_200": sum(
            count for w in windows for code, count in w.get("status", {}).items() if code != "200"
        ),
        "default_answers": sum(w.get("default_answers", 0) for w in windows),
    }


def per_round_ratios(windows: list[dict], reference: list[dict]) -> list[float | None]:
    """Each round's throughput over the reference's in the same round."""
    return [
        ratio(ours.get("throughput_rps"), theirs.get("throughput_rps"))
        for ours, theirs in zip(windows, reference)
    ]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def format_number(value: Any, digits: int = 1) -> str:
    """A table cell: "-" for a missing value, thousands separators, `digits` decimals for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or reference is None or reference == 0:
        return None
    return round(ours / reference, 3)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(FileNotFoundError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "hostname": platform.node(),
    }


def write_results(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Writes `payload` as bench/results/<name>.json (pretty-printed) and returns the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        print(f"  {label}: {time.monotonic() - start:.1f} s", file=sys.stderr)


def main(argv: list[str]) -> int:
    """`build-loadgen` builds the load generator; `nginx [PORT]` serves the reference (Ctrl-C)."""
    if argv[:1] == ["build-loadgen"]:
        print(build_loadgen())
        return 0
    if argv[:1] == ["nginx"]:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        port = int(argv[1]) if len(argv) > 1 else free_port()
        with NginxServer(port=port) as server:
            print(f"nginx serving {server.url} (pid {server.pid}); Ctrl-C to stop", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                while server.process is not None and server.process.poll() is None:
                    time.sleep(0.5)
        return 0
    print("usage: python bench/common.py build-loadgen | nginx [PORT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
