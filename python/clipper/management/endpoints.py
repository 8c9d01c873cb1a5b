"""The frontend's endpoints file, `<state_dir>/frontend.json`: how a running frontend tells container
managers (in this or any other process) its pid and the ports it actually bound.

Owns the file's format and the process-identity check (pid plus kernel start time, so a recycled pid is
never mistaken for the frontend). Written once by the frontend after it binds, removed when it stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ENDPOINTS_FILE_NAME = "frontend.json"


@dataclass(frozen=True)
class FrontendEndpoints:
    cluster_name: str
    pid: int
    process_start_ticks: int | None
    bind_address: str
    query_port: int
    management_port: int
    rpc_port: int
    # 0 when /metrics is served on the query port only.
    metrics_port: int
    # "curve": replicas need the cluster's keys (clipper.management.replica_keys); "none": any
    # local process may register (allow_unauthenticated_replicas).
    replica_auth: str = "curve"

    def write(self, state_dir: Path) -> Path:
        path = Path(state_dir) / ENDPOINTS_FILE_NAME
        temp_path = path.with_name(f".{ENDPOINTS_FILE_NAME}.tmp-{os.getpid()}")
        temp_path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(temp_path, path)
        return path

    @classmethod
    def read(cls, state_dir: Path) -> FrontendEndpoints | None:
        """The endpoints recorded in `state_dir`, or None when there is no (readable) file."""
        try:
            data = json.loads((Path(state_dir) / ENDPOINTS_FILE_NAME).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def is_alive(self) -> bool:
        return process_is_alive(self.pid, self.process_start_ticks)

    @staticmethod
    def remove(state_dir: Path, owner_pid: int | None = None) -> None:
        """Delete the file (only if `owner_pid` wrote it, when given)."""
        path = Path(state_dir) / ENDPOINTS_FILE_NAME
        if owner_pid is not None:
            current = FrontendEndpoints.read(state_dir)
            if current is None or current.pid != owner_pid:
                return
        path.unlink(missing_ok=True)


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) may contain spaces and parentheses: split after its closing ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line


def process_is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, if `start_ticks` is given, is the same process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    if stat:
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            return False
        return start_ticks is None or int(fields[19]) == start_ticks
    try:  # no procfs: fall back to a signal probe
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
