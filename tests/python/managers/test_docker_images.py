"""Clipper's image build contexts without Docker: the container SDK as a distribution of its own
(installed alone into a fresh virtual environment, it serves models and loads no control plane), the
frontend's requirements, and the digest that says when an image is stale."""

import subprocess
import sys
import zipfile

import pytest

from clipper.managers import docker_images


@pytest.fixture(scope="module")
def sdk_wheel(tmp_path_factory):
    return docker_images.build_sdk_wheel(tmp_path_factory.mktemp("sdk"))


def test_the_sdk_wheel_holds_the_sdk_and_not_the_control_plane(sdk_wheel):
    names = set(zipfile.ZipFile(sdk_wheel).namelist())
    for expected in (
        "clipper/__init__.py",
        "clipper/container/server.py",
        "clipper/container/closure_runner.py",
        "clipper/wire/Message.py",
        "clipper/deployers/_framework.py",  # framework closures unpickle in a replica
    ):
        assert expected in names
    assert not [n for n in names if n.startswith(("clipper/admin", "clipper/management"))]
    assert not [n for n in names if n.startswith(("clipper/managers", "clipper/state"))]
    assert not [n for n in names if n.endswith(".so")]  # pure Python: any platform


def test_the_sdk_wheel_is_reproducible(sdk_wheel, tmp_path):
    again = docker_images.build_sdk_wheel(tmp_path)
    assert again.read_bytes() == sdk_wheel.read_bytes()


def test_the_sdk_installs_alone_and_loads_no_control_plane(sdk_wheel, tmp_path):
    wheels = tmp_path / "wheels"
    docker_images.resolve_wheels(docker_images.SDK_REQUIREMENTS, wheels)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
    subprocess.run([*install, str(sdk_wheel)], check=True, capture_output=True)
    script = (
        "import sys, clipper.container, clipper\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('clipper.')}))\n"
        "try:\n"
        "    clipper.ClipperConnection\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    loaded, error = result.stdout.strip().splitlines()
    assert loaded == "['container', 'wire']"
    assert "only the model container SDK" in error and "clipper-serving" in error
    # Its command is there too.
    assert (venv / "bin" / "clipper-model").is_file()


def test_the_frontend_installs_clipper_serving_dependencies():
    requirements = docker_images.frontend_requirements()
    names = {r.split(">")[0].split("=")[0].split("<")[0] for r in requirements}
    assert {"numpy", "pyzmq", "flatbuffers", "redis", "dumb-init", "async-timeout"} <= names


def test_the_digest_follows_the_contents(tmp_path):
    (tmp_path / "a").write_text("one")
    first = docker_images.source_digest(tmp_path)
    assert docker_images.source_digest(tmp_path) == first
    (tmp_path / "a").write_text("two")
    assert docker_images.source_digest(tmp_path) != first


def test_an_unknown_containers_dir_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPPER_CONTAINERS_DIR", str(tmp_path))
    with pytest.raises(docker_images.ImageBuildError, match="CLIPPER_CONTAINERS_DIR"):
        docker_images.containers_dir()


def test_a_regular_install_finds_the_checkout_it_runs_from(monkeypatch, tmp_path):
    dockerfile = tmp_path / "repo" / "containers" / "python-closure" / "Dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM scratch\n")
    (tmp_path / "repo" / "tests").mkdir()
    monkeypatch.delenv("CLIPPER_CONTAINERS_DIR", raising=False)
    monkeypatch.setattr(docker_images, "__file__", str(tmp_path / "site" / "a" / "b" / "c.py"))
    monkeypatch.chdir(tmp_path / "repo" / "tests")
    assert docker_images.containers_dir() == tmp_path / "repo" / "containers"


def test_the_compiled_sdk_wheel_sits_beside_the_pure_one_and_serves_natively(sdk_wheel, tmp_path):
    """The wheel model images install for shared memory: the Cython extensions for this Python
    (pip prefers it over the pure wheel in the same folder), loading with the SDK alone."""
    compiled = sorted(sdk_wheel.parent.glob("clipper_container_sdk-*-cp3*-linux_*.whl"))
    assert len(compiled) == 1, sorted(p.name for p in sdk_wheel.parent.iterdir())
    names = set(zipfile.ZipFile(compiled[0]).namelist())
    for module in ("_shm_ring", "_native_codec"):
        assert [
            n for n in names if n.startswith(f"clipper/container/{module}.") and n.endswith(".so")
        ]
    assert not [n for n in names if n.endswith((".pyx", ".pxd", ".cpp", ".h"))]
    wheels = tmp_path / "wheels"
    docker_images.resolve_wheels(docker_images.SDK_REQUIREMENTS, wheels)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
    install += ["--find-links", str(sdk_wheel.parent), "clipper-container-sdk"]
    subprocess.run(install, check=True, capture_output=True)
    script = (
        "from clipper.container import codec, shm_client\n"
        "print(codec.NATIVE_AVAILABLE, shm_client.available())\n"
    )
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert result.stdout.split() == ["True", "True"]
