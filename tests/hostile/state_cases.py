"""The state store's faults: a corrupt state file, and a Redis server that restarts under a cluster."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import e2e_models
from e2e_support import free_ports, model_answer, wait_for
from hostile_cluster import SLO_MICROS, Case, HostileCluster, Outcome

from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import ClipperException


def corrupt_state_file(cluster: HostileCluster) -> Outcome:
    cluster.conn.stop_all()
    state_file = cluster.state_dir / "state.json"
    original = state_file.read_bytes()
    state_file.write_bytes(original[: len(original) // 2])  # truncated mid-write
    try:
        cluster.conn.start_clipper()
        message = "started"
    except ClipperException as error:
        message = str(error)
    named = f"{state_file} is not a valid clipper state file" in message
    backups = list(cluster.state_dir.glob("state.json.corrupt-*"))
    state_file.write_bytes(original)
    for backup in backups:
        backup.unlink()
    cluster.conn.start_clipper()
    return Outcome(
        f"start refused naming the file: {named}; backup kept: {len(backups) == 1}",
        named and len(backups) == 1,
    )


class _Redis:
    """A redis-server of the case's own, persisting to an append-only file as an operator runs it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        [self.port] = free_ports(1)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
             "--port", str(self.port), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def pong() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    return probe.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(pong, timeout_s=10, what="redis-server to answer")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def redis_restart(cluster: HostileCluster) -> Outcome:
    """A second cluster, on Redis: Redis is killed and started again under it."""
    with tempfile.TemporaryDirectory(prefix="clipper-hostile-redis-") as directory:
        redis = _Redis(Path(directory))
        redis.start()
        query, management, rpc, metrics = free_ports(4)
        conn = ClipperConnection(
            LocalContainerManager(
                cluster_name="hostile-redis", clipper_query_port=query,
                clipper_management_port=management, clipper_rpc_port=rpc,
                prometheus_port=metrics, state_dir=Path(directory) / "state",
                heartbeat_timeout_millis=1000, redis_ip="127.0.0.1", redis_port=redis.port,
            ),
            replica_start_timeout_s=60,
        )  # fmt: skip
        try:
            conn.start_clipper()
            conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
            deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
            conn.link_model_to_app("sum", "sum-model")
            model_answer(conn, "sum", {"input": [1.0, 2.0]})
            redis.kill()
            served_without_redis = model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"]
            try:
                conn.get_all_apps()
                admin_without = "answered"
            except ClipperException as error:
                admin_without = f"{type(error).__name__}"
            redis.start()
            started = time.monotonic()
            apps = wait_for(_apps_or_none(conn), timeout_s=20, what="the management API back")
            back_s = time.monotonic() - started
            conn.register_application("after", "doubles", "-1.0", SLO_MICROS)
            kept = sorted(conn.get_all_apps())
        finally:
            try:
                conn.stop_all(clear_state=True)
            finally:
                redis.kill()
    return Outcome(
        f"queries while Redis was down: {served_without_redis == 3.0}; admin call then: "
        f"{admin_without}; after Redis came back: apps {apps} in {back_s:.1f} s, then {kept}",
        served_without_redis == 3.0 and apps == ["sum"] and kept == ["after", "sum"],
    )


def _apps_or_none(conn: ClipperConnection):
    def apps() -> list[str] | None:
        try:
            return sorted(conn.get_all_apps())
        except ClipperException:
            return None

    return apps


CASES = [
    Case("state: truncated state.json", "start refused naming it; backup kept", corrupt_state_file,
         restarts_frontend=True),
    Case("state: Redis killed and restarted under a cluster",
         "queries served meanwhile; configuration intact after", redis_restart),
]  # fmt: skip
