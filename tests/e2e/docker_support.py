"""Shared by the end-to-end tests on the real Docker Engine: the Docker client (the calling module is
skipped, saying what to install, when the Engine does not answer) and a started cluster in containers
on free loopback ports, removed with its containers and state afterwards."""

import contextlib
import os
import uuid

import numpy as np
import pytest
from e2e_support import free_ports, predict

from clipper import ClipperConnection, DockerContainerManager
from clipper.managers import docker_images
from clipper.managers.docker import CLIPPER_LABEL


def docker_client():
    """The Docker SDK's client of the local Engine; skips the calling module when there is none."""
    docker = pytest.importorskip("docker", reason="the Docker SDK for Python (pip install docker)")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.skip(
            f"the Docker Engine does not answer at /var/run/docker.sock ({error}); install "
            "docker.io and start dockerd (docs/docker.md)",
            allow_module_level=True,
        )
    return client


def image_or_skip(client, kind):
    """Skips the test unless image `kind` exists (in any version) or may be built from nothing."""
    if os.environ.get("CLIPPER_TEST_BIG_IMAGES") == "1":
        return
    name = docker_images.IMAGES[kind].name
    if not client.images.list(name=name):
        pytest.skip(
            f"{name} was never built here (minutes); build it with `clipper images build {kind}`, "
            "or set CLIPPER_TEST_BIG_IMAGES=1 to let this test build it"
        )


def served_outputs(conn, app, inputs):
    """The model's answers to `inputs` (one input_batch), each checked to be a real answer."""
    status, body, _ = predict(
        conn, app, {"input_batch": np.asarray(inputs).tolist()}, timeout_s=120
    )
    assert status == 200, body
    answers = body["batch_predictions"]
    assert [answer["default"] for answer in answers] == [False] * len(inputs), answers[:3]
    return [answer["output"] for answer in answers]


def replica_container(client, model_name):
    """The (only) replica container of `model_name` version 1."""
    (replica,) = client.containers.list(
        filters={"label": f"ai.clipper.model_container.label={model_name}_1"}
    )
    return replica


def cluster_containers(client, cluster_name):
    return client.containers.list(all=True, filters={"label": f"{CLIPPER_LABEL}={cluster_name}"})


@contextlib.contextmanager
def docker_cluster(client, tmp_path, replica_start_timeout_s=90, **manager_options):
    """A started cluster in containers; stop_all must leave no container of it behind.
    `manager_options` go to DockerContainerManager (e.g. shm_transport=True)."""
    query, management, rpc, metrics = free_ports(4)
    manager = DockerContainerManager(
        cluster_name=f"e2e-{uuid.uuid4().hex[:8]}",
        clipper_query_port=query,
        clipper_management_port=management,
        clipper_rpc_port=rpc,
        prometheus_port=metrics,
        state_dir=tmp_path / "state",
        heartbeat_timeout_millis=1000,
        **manager_options,
    )
    conn = ClipperConnection(manager, replica_start_timeout_s=replica_start_timeout_s)
    conn.start_clipper()
    try:
        yield conn
    finally:
        conn.stop_all(graceful=False, clear_state=True)
    assert cluster_containers(client, manager.cluster_name) == []
