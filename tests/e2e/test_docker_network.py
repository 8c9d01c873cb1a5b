"""A cluster on a user-defined Docker bridge network (created here, removed after), on the real Docker
Engine: the frontend, its supervision reporter and the replicas run in containers on the network and
reach each other by container name; the frontend's ports are published on the host's loopback only;
queries are answered; stop_all leaves no container and the network can be removed."""

import uuid

import pytest
from docker_support import cluster_containers, docker_client
from e2e_support import free_ports, model_answer, wait_for
from test_supervision import supervision_samples

from clipper import ClipperConnection, DockerContainerManager
from clipper.deployers.python import deploy_python_closure

_CLIENT = docker_client()


@pytest.fixture
def bridge_network():
    network = _CLIENT.networks.create(f"clipper-e2e-{uuid.uuid4().hex[:8]}", driver="bridge")
    try:
        yield network
    finally:
        network.reload()
        network.remove()


def _product_closure():
    def product(inputs):
        return [str(float(x[0]) * float(x[1])) for x in inputs]

    return product


def test_a_cluster_on_a_bridge_network_serves_and_leaves_nothing(bridge_network, tmp_path):
    query, management, rpc, metrics = free_ports(4)
    manager = DockerContainerManager(
        cluster_name=f"e2e-net-{uuid.uuid4().hex[:8]}",
        clipper_query_port=query,
        clipper_management_port=management,
        clipper_rpc_port=rpc,
        prometheus_port=metrics,
        docker_network=bridge_network.name,
        state_dir=tmp_path / "state",
        heartbeat_timeout_millis=1000,
    )
    conn = ClipperConnection(manager, replica_start_timeout_s=90)
    conn.start_clipper()
    try:
        conn.register_application("product", "doubles", "-1.0", 5_000_000)
        deploy_python_closure(conn, "product", "1", "doubles", _product_closure(), num_replicas=2)
        conn.link_model_to_app("product", "product")
        for pair in ([2.0, 3.0], [1.5, -4.0], [0.0, 9.0]):
            expected = pair[0] * pair[1]
            assert model_answer(conn, "product", {"input": pair})["output"] == expected
        assert len(conn.get_all_model_replicas()) == 2

        # Every container of the cluster is on the network and on no other.
        containers = cluster_containers(_CLIENT, manager.cluster_name)
        roles = sorted(c.labels["ai.clipper.role"] for c in containers)
        assert roles == ["frontend", "replica", "replica", "supervision-reporter"]
        bridge_network.reload()
        attached = {c.id for c in bridge_network.containers}
        for container in containers:
            assert container.id in attached
            assert list(container.attrs["NetworkSettings"]["Networks"]) == [bridge_network.name]
        # The frontend's ports are published on the host's loopback only.
        frontend = next(c for c in containers if c.labels["ai.clipper.role"] == "frontend")
        published = {
            port: bindings
            for port, bindings in frontend.attrs["NetworkSettings"]["Ports"].items()
            if bindings  # the image's EXPOSEd ports that are not published read None
        }
        assert set(published) == {f"{port}/tcp" for port in (query, management, rpc, metrics)}
        for port, bindings in published.items():
            assert {(b["HostIp"], b["HostPort"]) for b in bindings} == {
                ("127.0.0.1", port.split("/")[0])
            }

        # The reporter reaches the frontend by its name on the network.
        # (It reads Docker every second: a report from before the second replica started may
        # still be the one on /metrics for a moment.)
        def both_replicas():
            slots = supervision_samples(conn, "product")["clipper_replica_restarts"]
            return sorted((labels["replica"], value) for labels, value in slots) == [
                ("0", 0),
                ("1", 0),
            ]

        wait_for(both_replicas, timeout_s=20, what="both replicas' restarts (0) on /metrics")
    finally:
        conn.stop_all(graceful=False, clear_state=True)
    assert cluster_containers(_CLIENT, manager.cluster_name) == []
    bridge_network.reload()
    assert bridge_network.containers == []
