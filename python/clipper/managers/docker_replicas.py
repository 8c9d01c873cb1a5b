"""Replica containers of `DockerContainerManager`: what they may use (`ModelResources`: CPUs, memory,
GPU device requests), what their labels say, and how a container's state reads (exit reasons, log
tails, exits from Docker's event log), plus which Clipper model image a saved model runs in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipper.cpu_placement import format_cpus, parse_cpus
from clipper.managers import docker_images
from clipper.managers.supervision import BACKING_OFF, CRASH_LOOPING, RUNNING, describe_exit

REPLICA_LABEL = "ai.clipper.replica"
CLOSURE_FILE_NAME = "func.pkl"
LOG_TAIL_LINES = 30
# Restarts after which a replica that keeps crashing is reported as crash-looping.
CRASH_LOOP_RESTARTS = 3


@dataclass(frozen=True)
class ModelResources:
    """What one model's replica containers may use: `cpus` (fractional CPUs), `memory` (Docker's
    syntax, e.g. "512m", or bytes), `gpus` ("all", a count, or a list of device ids) and `cpuset`
    (the CPUs they may run on, "1" or "2-3": Docker's --cpuset-cpus; keep CPU-bound models off the
    frontend's CPUs, docs/admission.md)."""

    cpus: float | None = None
    memory: str | int | None = None
    gpus: str | int | Sequence[str] | None = None
    cpuset: str | None = None

    def __post_init__(self) -> None:
        if self.cpuset is not None:  # normalized, and a clear error before Docker's
            object.__setattr__(self, "cpuset", format_cpus(parse_cpus(self.cpuset)))

    def container_kwargs(self) -> dict[str, Any]:
        import docker.types

        kwargs: dict[str, Any] = {}
        if self.cpus is not None:
            kwargs["nano_cpus"] = int(float(self.cpus) * 1e9)
        if self.memory is not None:
            kwargs["mem_limit"] = self.memory
        if self.cpuset is not None:
            kwargs["cpuset_cpus"] = self.cpuset
        if self.gpus is not None:
            if self.gpus == "all":
                request = docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
            elif isinstance(self.gpus, int):
                request = docker.types.DeviceRequest(count=self.gpus, capabilities=[["gpu"]])
            else:
                ids = [str(device) for device in self.gpus]
                request = docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
            kwargs["device_requests"] = [request]
        return kwargs

    def to_label(self) -> str:
        gpus = list(self.gpus) if isinstance(self.gpus, (list, tuple)) else self.gpus
        return json.dumps(
            {"cpus": self.cpus, "memory": self.memory, "gpus": gpus, "cpuset": self.cpuset}
        )


def replica_info(container: Any) -> dict[str, Any]:
    try:
        info = json.loads(container.labels.get(REPLICA_LABEL, "{}"))
    except ValueError:
        info = {}
    info.setdefault("replica_id", -1)
    info.setdefault("model_name", "")
    info.setdefault("model_version", "")
    return info


def exit_reason(state: Mapping[str, Any]) -> str:
    """A container's last exit in words (Docker reports 128+N for a process killed by signal N)."""
    code = int(state.get("ExitCode", 0))
    reason = describe_exit(-(code - 128) if code > 128 else code)
    if state.get("OOMKilled"):
        reason += " (out of memory: over its memory limit)"
    if state.get("Error"):
        reason += f" ({state['Error']})"
    return reason


def model_image_kind(model_dir: Path) -> str:
    """The Clipper image a saved model runs in: its framework's image when the closure is a framework
    deployer's, else the Python closure image."""
    import cloudpickle

    try:
        with (model_dir / CLOSURE_FILE_NAME).open("rb") as file:
            closure = cloudpickle.load(file)
    except Exception:  # noqa: BLE001 - a closure this host cannot load runs in the plain image
        return "python-closure"
    framework = getattr(closure, "framework", None)
    return docker_images.FRAMEWORK_IMAGES.get(str(framework), "python-closure")


def log_tail(container: Any, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = container.logs(stdout=True, stderr=True, tail=lines).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the container may be gone already
        return "(no log)"
    return text.strip() or "(empty log)"


def supervision_entry(container: Any, last_exit: Mapping[str, Any] | None) -> dict[str, Any]:
    """A replica container as `supervision_report` describes it: Docker's restart count, the last
    exit (`last_exit`: {"ExitCode", "OOMKilled"} from Docker's events, as the container's own state
    forgets it on a restart; None: it never exited), and "running" or, while Docker waits to restart
    it, "backing-off"/"crash-looping"."""
    info = replica_info(container)
    restarts = int(container.attrs.get("RestartCount", 0))
    if container.status == "running":
        state = RUNNING
    else:
        state = CRASH_LOOPING if restarts >= CRASH_LOOP_RESTARTS else BACKING_OFF
    return {
        "model_name": info["model_name"],
        "model_version": info["model_version"],
        "replica_id": info["replica_id"],
        "state": state,
        "restarts": restarts,
        "last_exit_reason": "" if last_exit is None else exit_reason(last_exit),
        "next_restart_in_s": 0.0,  # Docker does not say when its next restart is due
        "container": container.name,
    }


def last_exit(client: Any, container: Any) -> dict[str, Any] | None:
    """The container's last exit from Docker's event log ("die" and "oom" events): a restart
    resets the exit code in the container's state."""
    if container.attrs["State"].get("FinishedAt", "").startswith("0001"):
        return None  # never exited
    created = _unix_time(container.attrs["Created"])
    last: dict[str, Any] | None = None
    oom = False
    events = client.events(
        since=int(created) - 1,
        until=int(time.time()) + 1,
        filters={"container": container.id, "event": ["die", "oom"]},
        decode=True,
    )
    for event in events:
        if event.get("Action") == "oom":
            oom = True
        elif event.get("Action") == "die":
            code = int(event.get("Actor", {}).get("Attributes", {}).get("exitCode", 0))
            last, oom = {"ExitCode": code, "OOMKilled": oom}, False
    return last if last is not None else dict(container.attrs["State"])


def _unix_time(docker_time: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, "Z") as Unix time."""
    from datetime import datetime

    seconds, _, fraction = docker_time.rstrip("Z").partition(".")
    return datetime.fromisoformat(seconds + "+00:00").timestamp() + float(f"0.{fraction or 0}")
