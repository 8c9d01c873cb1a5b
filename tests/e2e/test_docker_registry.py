"""Model images through a registry, on the real Docker Engine: Debian's Docker registry (the
distribution registry, `docker-registry`) runs on 127.0.0.1 on a free port; `build_model` with
`container_registry` pushes the model's image to it; with the local copy removed, deploying the pushed
image pulls it back from the registry, and the replica answers correctly."""

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from docker_support import docker_client
from docker_support import docker_cluster as start_docker_cluster
from e2e_support import free_ports, model_answer

from clipper.container.closure import save_closure

_CLIENT = docker_client()
REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@pytest.fixture
def registry(tmp_path):
    """'127.0.0.1:<port>' of a registry storing in tmp_path (Docker pushes to 127.0.0.0/8 over plain
    HTTP without configuration)."""
    if not Path(REGISTRY_BINARY).exists():
        pytest.skip("Debian's docker-registry is not installed (scripts/setup.sh installs it)")
    (port,) = free_ports(1)
    config = tmp_path / "registry.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "log": {"level": "warn"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the registry did not start: {(tmp_path / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def docker_cluster(tmp_path):
    with start_docker_cluster(_CLIENT, tmp_path) as conn:
        yield conn


def test_a_model_image_pushed_to_a_registry_is_pulled_and_served(
    registry, docker_cluster, tmp_path
):
    conn = docker_cluster
    model_dir = tmp_path / "model"

    def scaled(inputs):
        return [str(sum(float(v) for v in x) * 10.0) for x in inputs]

    save_closure(scaled, model_dir)
    image = conn.cm.build_model("scaler", "7", str(model_dir), container_registry=registry)
    assert image.startswith(f"{registry}/clipper-model/")
    repository, tag = image.rsplit(":", 1)
    path = repository[len(registry) + 1 :]
    with urllib.request.urlopen(f"http://{registry}/v2/{path}/tags/list", timeout=10) as answer:
        assert json.loads(answer.read()) == {"name": path, "tags": [tag]}

    # Only the registry has it now, as on another Docker host.
    _CLIENT.images.remove(image, force=True)
    with pytest.raises(Exception, match="No such image|not found"):
        _CLIENT.images.get(image)
    conn.register_application("scale", "doubles", "-1.0", 5_000_000)
    conn.deploy_model("scaler", "7", "doubles", image)
    conn.link_model_to_app("scale", "scaler")
    assert model_answer(conn, "scale", {"input": [1.0, 2.5]}, timeout_s=60)["output"] == 35.0
    assert model_answer(conn, "scale", {"input": [-4.0]})["output"] == -40.0
    (replica,) = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=scaler_7"}
    )
    assert replica.image.tags == [image]
    # The pulled image carries the cluster's label: stop_all(clear_state=True) removes it.
