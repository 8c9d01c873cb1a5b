"""Replica containers on the shared-memory transport (DockerContainerManager(shm_transport=True)), on
the real Docker Engine: the model image carries the SDK's compiled extensions (built on the host for
the image's Python), the replica negotiates shared memory through the mounted socket directory, says
so in the replica listing and answers correctly, including a 1 MiB tensor. Without the option the
replica serves over ZeroMQ and is not even offered shared memory."""

import numpy as np
from docker_support import docker_client
from docker_support import docker_cluster as start_docker_cluster
from e2e_support import model_answer, predict, wait_for

from clipper.deployers.python import deploy_python_closure

_CLIENT = docker_client()


def _transports(conn):
    return [replica["transport"] for replica in conn.get_all_model_replicas(verbose=True)]


def _replica_container():
    return _CLIENT.containers.list(filters={"label": "ai.clipper.model_container.label=summer_1"})[
        0
    ]


def _row_sums():
    # Made here so that cloudpickle saves it by value: the image cannot import this test module.
    def row_sums(inputs):
        return [float(np.sum(row)) for row in inputs]

    return row_sums


def _deploy_row_sums(conn):
    conn.register_application("sum", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _row_sums())
    conn.link_model_to_app("sum", "summer")
    assert model_answer(conn, "sum", {"input": [1.0, 2.5]}, timeout_s=60.0)["output"] == 3.5


def test_a_replica_container_negotiates_shared_memory_and_answers(tmp_path):
    with start_docker_cluster(_CLIENT, tmp_path, shm_transport=True) as conn:
        _deploy_row_sums(conn)
        wait_for(lambda: _transports(conn) == ["shm"], timeout_s=20.0, what="a shm replica")
        status, answer, _ = predict(
            conn, "sum", {"input_batch": [[1.0], [2.0, 3.0], [4.0, 5.0, 6.0]]}
        )
        assert status == 200
        assert [entry["output"] for entry in answer["batch_predictions"]] == [1.0, 5.0, 15.0]
        tensor = np.random.default_rng(3).random(131_072)  # 1 MiB of doubles
        status, answer, _ = predict(conn, "sum", {"input": tensor.tolist()})
        assert status == 200 and not answer["default"]
        assert abs(answer["output"] - float(np.sum(tensor))) < 1e-6
        # The replica runs as the frontend's user and sees only the socket directory.
        replica = _replica_container()
        frontend = _CLIENT.containers.get(conn.cm._container_name("frontend"))
        assert replica.attrs["Config"]["User"] == frontend.attrs["Config"]["User"]
        mounts = {mount["Destination"] for mount in replica.attrs["Mounts"]}
        assert mounts == {"/run/clipper-shm"}
        logs = replica.logs().decode()
        assert "event=shm_attached" in logs, logs[-2000:]


def test_without_the_option_a_replica_container_serves_over_zeromq(tmp_path):
    with start_docker_cluster(_CLIENT, tmp_path) as conn:
        _deploy_row_sums(conn)
        assert _transports(conn) == ["zmq"]
        logs = _replica_container().logs().decode()
        assert "shared_memory=no" in logs and "shm_unavailable" not in logs, logs[-2000:]
