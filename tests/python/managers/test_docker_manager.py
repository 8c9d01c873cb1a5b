"""DockerContainerManager against the real Docker Engine, without a frontend: what a replica container
is created with (labels, command, CPU/memory limits, GPU device requests, restart policy), how its
exits read, what Clipper's images are (non-root, HEALTHCHECK, an init that stops on SIGTERM within a
second, a model image that holds the SDK and no control plane)."""

import json
import time
import uuid

import pytest

from clipper import ClipperException, DockerContainerManager
from clipper.container.closure import save_closure
from clipper.deployers._framework import FrameworkClosure
from clipper.exceptions import DeploymentError
from clipper.management.frontend import FrontendOptions, build_argument_parser
from clipper.management.replica_keys import ensure_cluster_keys, read_replica_credentials
from clipper.managers import docker_images
from clipper.managers.docker import CLIPPER_LABEL, MODEL_LABEL
from clipper.managers.docker_replicas import exit_reason, model_image_kind
from clipper_native import defaults

docker = pytest.importorskip("docker", reason="the Docker SDK for Python (pip install docker)")
try:
    _CLIENT = docker.from_env()
    _CLIENT.ping()
except docker.errors.DockerException as _error:
    pytest.skip(
        f"the Docker Engine does not answer at /var/run/docker.sock ({_error}); install docker.io "
        "and start dockerd (docs/docker.md)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def closure_image():
    return docker_images.ensure_image(_CLIENT, "python-closure")


@pytest.fixture
def manager(tmp_path):
    cm = DockerContainerManager(
        cluster_name=f"unit-{uuid.uuid4().hex[:8]}",
        clipper_query_port=1,  # never started: no frontend in these tests
        clipper_management_port=2,
        clipper_rpc_port=9,  # the discard port: nothing listens, replicas keep retrying
        state_dir=tmp_path / "state",
    )
    # What start_clipper creates before the frontend starts: replicas are handed these keys.
    (tmp_path / "state").mkdir()
    ensure_cluster_keys(tmp_path / "state")
    yield cm
    cm.stop_all(graceful=False, clear_state=True)
    assert cm._containers() == []
    assert _CLIENT.images.list(filters={"label": f"{CLIPPER_LABEL}={cm.cluster_name}"}) == []


@pytest.mark.parametrize("name", ["", "a/b", "has space"])
def test_cluster_names_must_be_container_name_safe(name):
    with pytest.raises(ClipperException, match="cluster_name"):
        DockerContainerManager(cluster_name=name)


def test_ports_must_be_fixed():
    with pytest.raises(ClipperException, match="fixed port"):
        DockerContainerManager(cluster_name="c", clipper_rpc_port=0)


def test_a_replica_container_carries_labels_command_resources_and_gpus(manager, closure_image):
    manager.set_model_resources("m", cpus=0.5, memory="256m", gpus="all", cpuset="0")
    container = manager.create_replica_container("m", "1", "doubles", closure_image)
    try:
        attrs = _CLIENT.api.inspect_container(container.id)
        host = attrs["HostConfig"]
        assert host["DeviceRequests"] == [
            {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
        ]
        assert host["NanoCpus"] == 500_000_000
        assert host["CpusetCpus"] == "0"
        assert host["Memory"] == 256 * 1024 * 1024
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 10}
        assert host["NetworkMode"] == "host"
        labels = attrs["Config"]["Labels"]
        assert labels[CLIPPER_LABEL] == manager.cluster_name
        assert labels[MODEL_LABEL] == "m_1"
        assert json.loads(labels["ai.clipper.replica"])["resources"]["gpus"] == "all"
        command = attrs["Config"]["Cmd"]
        assert command[command.index("--frontend") + 1] == "tcp://127.0.0.1:9"
        assert command[command.index("--replica-id") + 1] == "0"
        credentials = read_replica_credentials(manager.state_dir)
        assert f"CLIPPER_RPC_CREDENTIALS={credentials.to_json()}" in attrs["Config"]["Env"]
        # The next replica of the version gets the next id.
        second = manager.create_replica_container("m", "1", "doubles", closure_image)
        assert second.name.endswith("-m-1-1")
    finally:
        manager.stop_all(graceful=False)


def test_a_shm_replica_container_gets_the_replicas_spin(tmp_path, closure_image):
    manager = DockerContainerManager(
        cluster_name=f"unit-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "state",
        shm_transport=True,
        replica_shm_spin_micros=40,
    )
    (tmp_path / "state").mkdir()
    ensure_cluster_keys(tmp_path / "state")
    container = manager.create_replica_container("m", "1", "doubles", closure_image)
    try:
        environment = _CLIENT.api.inspect_container(container.id)["Config"]["Env"]
        assert "CLIPPER_SHM_SPIN_MICROS=40" in environment
        assert "CLIPPER_TRANSPORT=auto" in environment
    finally:
        manager.stop_all(graceful=False, clear_state=True)


@pytest.mark.parametrize(
    "option",
    [
        {"replica_shm_spin_micros": -1},
        {"shm_response_spin_micros": 10_001},
        {"shm_response_spin_cost_micros": 10_001},
        {"shm_response_spin_cost_micros": "7"},
    ],
)
def test_the_spins_are_bounded(option):
    ((name, _),) = option.items()
    with pytest.raises(ClipperException, match=f"^{name} must be an int from 0 to 10000"):
        DockerContainerManager(cluster_name="c", **option)


def _frontend_options(manager):
    """What the frontend container of `manager` runs with: its command read by the frontend's own
    argument parser (the frontend image runs `python -m clipper.management.frontend`)."""
    command = manager._frontend_command(io_threads=2)
    return FrontendOptions(**vars(build_argument_parser().parse_args(command)))


def test_the_frontend_container_gets_the_shared_memory_and_prefetch_options():
    manager = DockerContainerManager(
        cluster_name="c",
        shm_transport=True,
        shm_response_spin_micros=300,
        shm_response_spin_cost_micros=0,
        replica_prefetch_full_batches=False,  # the default is on
    )
    options = _frontend_options(manager)
    assert (options.shm_response_spin_micros, options.shm_response_spin_cost_micros) == (300, 0)
    assert options.replica_prefetch_full_batches is False
    assert options.io_threads == 2
    # At their defaults no flag is passed, so a frontend image older than the options still starts.
    plain = DockerContainerManager(cluster_name="c")
    assert not [arg for arg in plain._frontend_command() if "spin" in arg or "prefetch" in arg]
    options = _frontend_options(plain)
    assert options.shm_response_spin_cost_micros == defaults.SHM_RESPONSE_SPIN_COST_MICROS


def test_extra_container_kwargs_reach_every_container_beside_clippers_own(tmp_path, closure_image):
    manager = DockerContainerManager(
        cluster_name=f"unit-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "state",
        extra_container_kwargs={
            "labels": {"team": "search", CLIPPER_LABEL: "not-this"},
            "environment": ["MODEL_MODE=fast"],
            "dns_opt": ["ndots:1"],
        },
    )
    (tmp_path / "state").mkdir()
    ensure_cluster_keys(tmp_path / "state")
    container = manager.create_replica_container("m", "1", "doubles", closure_image)
    try:
        attrs = _CLIENT.api.inspect_container(container.id)
        assert attrs["Config"]["Labels"]["team"] == "search"
        assert attrs["Config"]["Labels"][CLIPPER_LABEL] == manager.cluster_name
        assert "MODEL_MODE=fast" in attrs["Config"]["Env"]
        assert "CLIPPER_RPC_PORT=7000" in attrs["Config"]["Env"]
        assert attrs["HostConfig"]["DnsOptions"] == ["ndots:1"]
    finally:
        manager.stop_all(graceful=False, clear_state=True)


def test_gpu_device_ids_and_counts_become_device_requests(manager, closure_image):
    manager.set_model_resources("m", gpus=["0", "2"])
    by_id = manager.create_replica_container("m", "1", "doubles", closure_image)
    manager.set_model_resources("m", gpus=2)
    by_count = manager.create_replica_container("m", "1", "doubles", closure_image)
    requests = [
        _CLIENT.api.inspect_container(c.id)["HostConfig"]["DeviceRequests"][0]
        for c in (by_id, by_count)
    ]
    assert (requests[0]["DeviceIDs"], requests[0]["Count"]) == (["0", "2"], 0)
    assert (requests[1]["DeviceIDs"], requests[1]["Count"]) == ([], 2)


def test_a_gpu_replica_on_a_host_without_gpus_fails_with_the_setup_to_do(manager, closure_image):
    if any(runtime == "nvidia" for runtime in _CLIENT.info().get("Runtimes", {})):
        pytest.skip("this Docker host has the NVIDIA runtime: GPU replicas can start here")
    manager.set_model_resources("m", gpus="all")
    with pytest.raises(DeploymentError, match="NVIDIA Container Toolkit"):
        manager.deploy_model("m", "1", "doubles", closure_image)
    assert manager._containers() == []  # the container that could not start is removed


def test_a_replica_container_stops_within_a_second_on_sigterm(manager, tmp_path):
    save_closure(lambda inputs: [str(x) for x in inputs], tmp_path / "model")
    image = manager.build_model("m", "1", str(tmp_path / "model"))
    assert image == f"clipper-model/{manager.cluster_name}-m:1"
    assert _CLIENT.images.get(image).labels[MODEL_LABEL] == "m_1"
    container = manager.create_replica_container("m", "1", "doubles", image)
    container.start()
    deadline = time.monotonic() + 30
    while "event=registering" not in container.logs().decode() and time.monotonic() < deadline:
        container.reload()
        assert container.status == "running", container.logs().decode()
        time.sleep(0.1)
    # Its health check fails: no connection to a frontend (nothing listens on port 9).
    health = container.exec_run(["python3", "/opt/clipper/healthcheck.py", "replica"])
    assert health.exit_code == 1, health.output
    started = time.monotonic()
    container.stop(timeout=10)
    assert time.monotonic() - started < 1.0
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()


def test_images_run_unprivileged_with_a_healthcheck_and_an_init(closure_image):
    frontend = docker_images.ensure_image(_CLIENT, "frontend")
    for name, role in ((closure_image, "replica"), (frontend, "frontend")):
        config = _CLIENT.images.get(name).attrs["Config"]
        assert config["User"] == "10001:10001"
        assert config["Healthcheck"]["Test"][-1] == role
        assert config["Entrypoint"][:2] == ["dumb-init", "--"]


def test_the_supervision_reporter_image_is_unprivileged_with_its_own_health_check():
    reporter = docker_images.ensure_image(_CLIENT, "supervision-reporter")
    config = _CLIENT.images.get(reporter).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][-2:] == ["clipper.managers.supervision_reporter",
                                                  "healthcheck"]  # fmt: skip
    assert config["Entrypoint"] == [
        "dumb-init", "--", "python3", "-m", "clipper.managers.supervision_reporter"
    ]  # fmt: skip
    # It holds the platform clients; the frontend image, which parses queries, holds neither.
    frontend = docker_images.ensure_image(_CLIENT, "frontend")
    probe = "import importlib.util as u; print(u.find_spec('docker'), u.find_spec('kubernetes'))"
    for image, expected_none in ((reporter, False), (frontend, True)):
        output = _CLIENT.containers.run(
            image, ["-c", probe], entrypoint=["python3"], remove=True, network_mode="none"
        ).decode()
        assert ("None None" in output) is expected_none, (image, output)


def test_the_model_image_holds_the_sdk_and_no_control_plane(closure_image):
    script = (
        "import sys, importlib.util, clipper.container\n"
        "print(sorted(m for m in sys.modules if m.startswith('clipper')))\n"
        "print([m for m in ('clipper.admin', 'clipper.management', 'clipper_native', 'gcc')"
        " if importlib.util.find_spec(m)])\n"
    )
    output = _CLIENT.containers.run(
        closure_image, entrypoint=["python3", "-c", script], remove=True, network="none"
    ).decode()
    loaded, installed = output.strip().splitlines()
    assert all(m.split(".")[:2] in (["clipper"], ["clipper", "container"], ["clipper", "wire"])
               for m in eval(loaded)), loaded  # fmt: skip
    assert installed == "[]"


def test_exit_reasons_name_the_signal_and_the_memory_limit():
    assert exit_reason({"ExitCode": 3}) == "exited with code 3"
    reason = exit_reason({"ExitCode": 137, "OOMKilled": True})
    assert "SIGKILL" in reason and "memory limit" in reason


def test_framework_models_run_in_their_framework_image(tmp_path):
    save_closure(lambda inputs: [str(x) for x in inputs], tmp_path / "plain")
    assert model_image_kind(tmp_path / "plain") == "python-closure"
    # Every framework deployer's closure names an image of its own.
    for framework in ("sklearn", "xgboost", "pytorch", "onnx", "tensorflow", "pyspark"):
        save_closure(FrameworkClosure(framework, str, lambda m, x: x), tmp_path / framework)
        assert model_image_kind(tmp_path / framework) == framework
