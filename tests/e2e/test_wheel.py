"""E2E: the self-contained wheel. scripts/build_wheel.sh builds (or reuses) the wheel with its shared
libraries bundled, installs it in a container from which the engine's system libraries were removed,
and serves queries there; this test runs it, then checks the bundle and the build cache."""

import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from e2e_support import free_ports

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_wheel.sh"
BASE_IMAGE = os.environ.get("CLIPPER_BASE_IMAGE", "clipper-base:bookworm")
# What the engine links from the system; each must travel inside the wheel (llhttp is built in).
BUNDLED = ("libuv", "libzmq", "libb64", "libxxhash", "libabsl_")

# A cache miss compiles the engine (about two minutes on two cores, longer on a busy machine).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def _require_docker():
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is missing: apt-get install -y docker.io (docs/docker.md)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode != 0:
        pytest.skip("the Docker Engine does not answer at /var/run/docker.sock; start dockerd "
                    "(docs/docker.md)")
    inspect = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False,
                             timeout=30)
    if inspect.returncode != 0:
        pytest.skip(f"the base image {BASE_IMAGE} is missing: build it with scripts/build_base_image.sh")


def _run_script(*args, ports=None):
    env = dict(os.environ)
    if ports:
        env["CLIPPER_WHEEL_QUERY_PORT"], env["CLIPPER_WHEEL_RPC_PORT"] = (str(p) for p in ports)
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, check=False, text=True, env=env,
                            timeout=1400, cwd=ROOT)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"build_wheel.sh {' '.join(args)} failed ({result.returncode}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result.stdout, elapsed


@pytest.fixture(scope="module")
def checked_wheel():
    """Output of `build_wheel.sh --check` and the repaired wheel it names (its last line)."""
    _require_docker()
    output, _ = _run_script("--check", ports=free_ports(2))
    return output, Path(output.strip().splitlines()[-1])


def test_repaired_wheel_serves_queries_without_the_system_libraries(checked_wheel):
    output, _ = checked_wheel
    # The container lacked the libraries, ldd found every one inside the wheel, both entry points served.
    assert output.count("every library resolves, bundled ones from clipper_serving.libs") == 2, output
    assert "wheel check: _core.Engine answered" in output, output
    assert "wheel check: clipper-frontend answered" in output, output
    assert "wheel check: passed" in output, output
    assert "'output': 'wheel-default'" in output and "'default': True" in output, output


def test_wheel_carries_the_engine_libraries_and_a_manylinux_tag(checked_wheel):
    _, wheel = checked_wheel
    assert wheel.is_file() and "manylinux" in wheel.name, wheel
    names = zipfile.ZipFile(wheel).namelist()
    bundled = [name.rsplit("/", 1)[1] for name in names if name.startswith("clipper_serving.libs/")]
    for library in BUNDLED:
        assert any(name.startswith(library) for name in bundled), (library, bundled)
    for shipped in ("clipper_native/bin/clipper-frontend", "clipper/wire/Message.py"):
        assert shipped in names, shipped
    assert any(name.startswith("clipper_native/_core.") and name.endswith(".so") for name in names)


def test_unchanged_sources_reuse_the_built_wheel(checked_wheel):
    _, wheel = checked_wheel
    output, elapsed = _run_script()
    assert "reusing" in output, output
    assert Path(output.strip().splitlines()[-1]) == wheel
    assert elapsed < 30, f"a cached wheel took {elapsed:.1f} s to find"
