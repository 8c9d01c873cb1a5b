"""CPU placement as a deployment rule (docs/operations.md): LocalContainerManager pins the frontend
and each model's replicas to the CPUs it is given, read back from the kernel (/proc/<pid>/status and
every thread's /proc/<pid>/task/<tid>/status); a replica the supervisor restarts keeps its CPUs."""

import os
import signal
from pathlib import Path

import e2e_models
import pytest
from e2e_support import model_answer, wait_for

from clipper.cpu_placement import parse_cpus
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import ClipperException

ALLOWED = sorted(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="CPU isolation needs two CPUs")


def cpus_of(pid):
    """The CPU list each thread of `pid` may run on (a set: one entry when all agree)."""
    lists = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                lists.add(line.split(":", 1)[1].strip())
    return lists


def live_replica(conn, name):
    replicas = [r for r in conn.cm.list_replicas() if r.model_name == name and r.is_alive()]
    return replicas[0] if len(replicas) == 1 else None


def test_the_frontend_and_each_models_replicas_run_on_the_cpus_given(clusters):
    frontend_cpu, model_cpu = ALLOWED[0], ALLOWED[-1]
    conn = clusters.start(
        "placed", frontend_cpus=str(frontend_cpu), model_cpus={"pinned": [model_cpu]}
    )
    conn.register_application("placed", "doubles", "-1", 1_000_000)
    deploy_python_closure(conn, "pinned", "1", "doubles", e2e_models.sum_of_each)
    deploy_python_closure(conn, "other", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("placed", "pinned")
    model_answer(conn, "placed", {"input": [1.0, 2.0]})

    # Every thread of the frontend (I/O, RPC, management, supervisor) on its CPU.
    assert cpus_of(conn.cm.frontend_pid()) == {str(frontend_cpu)}
    replica = live_replica(conn, "pinned")
    assert cpus_of(replica.pid) == {str(model_cpu)}
    assert replica.cpus == str(model_cpu)
    # A model not named gets every CPU the frontend does not use.
    rest = sorted(set(ALLOWED) - {frontend_cpu})
    other = live_replica(conn, "other")
    assert cpus_of(other.pid) == {other.cpus}
    assert parse_cpus(other.cpus) == set(rest)

    # Killed, the replica is restarted by the frontend's supervisor on the same CPU.
    os.kill(replica.pid, signal.SIGKILL)
    restarted = wait_for(
        lambda: (r := live_replica(conn, "pinned")) and r.pid != replica.pid and r,
        timeout_s=30,
        what="the killed replica's replacement",
    )
    model_answer(conn, "placed", {"input": [3.0, 4.0]})  # it serves: its start-up is over
    assert cpus_of(restarted.pid) == {str(model_cpu)}


def test_cpus_the_operator_may_not_use_are_refused_before_anything_starts(tmp_path):
    from clipper import LocalContainerManager

    beyond = str(ALLOWED[-1] + 1)
    with pytest.raises(ClipperException, match="not available"):
        LocalContainerManager(state_dir=tmp_path / "a", frontend_cpus=beyond)
    manager = LocalContainerManager(state_dir=tmp_path / "b")
    with pytest.raises(ClipperException, match=r"model_cpus\['m'\]"):
        manager.set_model_cpus("m", beyond)
    with pytest.raises(ClipperException, match="CPU list"):
        manager.set_model_cpus("m", "one")
