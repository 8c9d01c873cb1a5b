"""Clipper's Docker images: staging their build contexts from `containers/` and building them locally.

Owns the image names, the build contexts (a Dockerfile from `containers/`, wheels resolved offline from
the host's wheelhouse, the staged container SDK wheel or engine), the source digest that says when an
image is stale, and the build itself (the `docker` SDK's legacy builder, progress logged as events).
`python -m clipper.managers.docker_images` builds them ahead of time. Blocking; not for the query path.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipper.exceptions import ClipperException

logger = logging.getLogger(__name__)

# The tag of every Clipper image; CLIPPER_IMAGE_VERSION builds and uses others (e.g. to try an SDK
# change under new tags before the usual ones are replaced).
IMAGE_VERSION = os.environ.get("CLIPPER_IMAGE_VERSION", "0.1.0")
LOCAL_BASE_IMAGE = "clipper-base:bookworm"
PUBLIC_BASE_IMAGE = "python:3.11-slim"
DIGEST_LABEL = "ai.clipper.source.digest"
# What every model image installs: the SDK's dependencies and the init that runs as PID 1.
SDK_REQUIREMENTS = ("numpy", "pyzmq", "flatbuffers", "cloudpickle", "dumb-init")
# Besides clipper-serving's own dependencies, the frontend image installs its init and async-timeout
# (redis needs it on Python < 3.11.3, Debian bookworm's 3.11.2, which a newer host would not resolve).
FRONTEND_EXTRA_REQUIREMENTS = ("dumb-init", "async-timeout")
# The supervision reporter's image is the frontend's plus the platform clients it reads restarts with.
REPORTER_REQUIREMENTS = ("docker>=7", "kubernetes>=30")


class ImageBuildError(ClipperException):
    """A Clipper image could not be staged or built; the message says which and why."""


@dataclass(frozen=True)
class ImageSpec:
    """One image of `containers/<directory>`: its repository name and the framework packages it adds
    to the model base (distribution names, resolved with their dependencies from the wheelhouse)."""

    directory: str
    repository: str
    packages: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.repository}:{IMAGE_VERSION}"


def matching_host(distribution: str) -> str:
    """A requirement for the version of `distribution` installed here (its local label, e.g. torch's
    `+cpu`, dropped: `==` matches it), else the bare name. The PyTorch and ONNX images pin the
    versions that save their models (a module pickled by one torch, an opset exported by one onnx),
    and resolving a pinned version takes the host's own wheel (torch's: a file on disk) instead of
    a newer one from an index."""
    from importlib import metadata

    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return distribution
    return f"{distribution}=={version.split('+')[0]}"


IMAGES: dict[str, ImageSpec] = {
    "frontend": ImageSpec("frontend", "clipper/frontend"),
    # Built FROM the frontend image (clipper.managers.supervision_reporter), not a model image.
    "supervision-reporter": ImageSpec(
        "supervision-reporter", "clipper/supervision-reporter", REPORTER_REQUIREMENTS
    ),
    "python-closure": ImageSpec("python-closure", "clipper/python-closure-container"),
    "sklearn": ImageSpec("sklearn", "clipper/sklearn-container", ("scikit-learn",)),
    "xgboost": ImageSpec("xgboost", "clipper/xgboost-container", ("xgboost-cpu", "scikit-learn")),
    "pytorch": ImageSpec("pytorch", "clipper/pytorch-container", (matching_host("torch"),)),
    "onnx": ImageSpec(
        "onnx", "clipper/onnx-container", (matching_host("onnx"), matching_host("onnxruntime"))
    ),
    "tensorflow": ImageSpec("tensorflow", "clipper/tensorflow-container", ("tensorflow-cpu",)),
    "pyspark": ImageSpec("pyspark", "clipper/pyspark-container", ("pyspark",)),
}
# Images that are not model images (build_model never builds FROM them).
CONTROL_PLANE_IMAGES = ("frontend", "supervision-reporter")
# The model image each framework deployer's models run in (FrameworkClosure.framework -> IMAGES key).
FRAMEWORK_IMAGES = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "pytorch": "pytorch",
    "onnx": "onnx",
    "tensorflow": "tensorflow",
    "pyspark": "pyspark",
}


def default_wheelhouse() -> Path:
    configured = os.environ.get("CLIPPER_WHEELHOUSE")
    return Path(configured) if configured else Path.home() / ".cache" / "clipper" / "wheelhouse"


def containers_dir() -> Path:
    """The `containers/` folder of a Clipper checkout: $CLIPPER_CONTAINERS_DIR when set, else the one
    beside this package's sources (an editable install), else one in the working directory or above
    it (a regular install used from a checkout, as CI does)."""
    configured = os.environ.get("CLIPPER_CONTAINERS_DIR")
    if configured:
        candidates = [Path(configured)]
    else:
        here = Path.cwd().resolve()
        candidates = [Path(__file__).resolve().parents[3] / "containers"]
        candidates += [directory / "containers" for directory in (here, *here.parents)]
    for candidate in candidates:
        if (candidate / "python-closure" / "Dockerfile").is_file():
            return candidate
    raise ImageBuildError(
        f"Clipper's Dockerfiles are not at {candidates[0]}; set CLIPPER_CONTAINERS_DIR to the "
        "containers/ folder of a Clipper checkout"
    )


def _package_dir(module: str) -> Path:
    """The directory of an installed package's `__init__.py` (editable installs spread a package
    over several directories: this is the one holding its sources)."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as error:
        raise ImageBuildError(
            f"the package {module} cannot be imported ({error}); install Clipper (pip install -e . "
            "at the repository root) so its generated code exists"
        ) from error
    return Path(str(loaded.__file__)).parent


def _copy_python_package(source: Path, destination: Path, keep_binaries: bool = False) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        kept = (".py", ".pyi", ".json", ".typed") + ((".so",) if keep_binaries else ())
        return {
            n
            for n in names
            if n == "__pycache__"
            or (
                Path(directory, n).is_file()
                and not n.endswith(kept)
                and Path(directory).name != "bin"
            )
        }

    shutil.copytree(source, destination, ignore=ignore, dirs_exist_ok=True)


def stage_sdk_sources(destination: Path) -> Path:
    """Lays out clipper-container-sdk's sources (containers/sdk/pyproject.toml and setup.py, the lazy
    `clipper/__init__.py`, clipper.container, clipper.wire, and what a framework closure unpickles:
    clipper.deployers and clipper.exceptions) under `destination`; returns it."""
    package = _package_dir("clipper")
    for sdk_file in ("pyproject.toml", "setup.py"):
        shutil.copyfile(containers_dir() / "sdk" / sdk_file, destination / sdk_file)
    target = destination / "clipper"
    target.mkdir(parents=True, exist_ok=True)
    for module in ("__init__.py", "exceptions.py"):
        shutil.copyfile(package / module, target / module)
    for subpackage in ("container", "deployers"):
        _copy_python_package(package / subpackage, target / subpackage)
    _copy_python_package(_package_dir("clipper.wire"), target / "wire")
    return destination


def sdk_native_sources() -> list[Path]:
    """What the SDK's Cython extensions are built from (the checkout's .pyx/.pxd files and the ring's
    C++ header); empty when this installation has no checkout beside it."""
    checkout = containers_dir().parent
    container = checkout / "python" / "clipper" / "container"
    sources = sorted([*container.glob("*.pyx"), *container.glob("*.pxd")])
    header = checkout / "cpp" / "rpc" / "shm_ring.h"
    return [*sources, header] if sources and header.is_file() else []


def build_sdk_wheel(wheel_dir: Path) -> Path:
    """Builds the clipper-container-sdk wheels into `wheel_dir`: the pure-Python one (returned), and
    beside it, when the checkout's Cython sources, Cython and a compiler are here, one with the
    compiled extensions for this interpreter (shared-memory rings, the native receive/reply path).
    pip in an image picks the compiled one when its Python matches this one (same minor version,
    glibc at least as new), else the pure one, which serves over ZeroMQ with the Python codec."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    # A fixed timestamp makes the wheel's bytes depend on its sources only (see source_digest).
    reproducible = {"SOURCE_DATE_EPOCH": "315532800"}
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    command += ["--wheel-dir", str(wheel_dir)]
    with tempfile.TemporaryDirectory(prefix="clipper-sdk-") as staging:
        stage_sdk_sources(Path(staging))
        _run([*command, staging], "building the clipper-container-sdk wheel", reproducible)
    native_sources = sdk_native_sources()
    if native_sources:
        with tempfile.TemporaryDirectory(prefix="clipper-sdk-native-") as staging:
            stage_sdk_sources(Path(staging))
            for source in native_sources:
                where = (
                    Path(staging, "include", "rpc")
                    if source.suffix == ".h"
                    else Path(staging, "clipper", "container")
                )
                where.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, where / source.name)
            try:
                _run(
                    [*command, staging],
                    "building the clipper-container-sdk wheel with its extensions",
                    {**reproducible, "CLIPPER_SDK_NATIVE": "1"},
                )
            except ImageBuildError as error:
                logger.warning(
                    "event=sdk_native_wheel_failed fallback=pure_python error=%s", str(error)[-500:]
                )
    else:
        logger.warning("event=sdk_native_sources_missing fallback=pure_python")
    pure = sorted(wheel_dir.glob("clipper_container_sdk-*-py3-none-any.whl"))
    if not pure:
        raise ImageBuildError(f"pip wrote no clipper-container-sdk wheel into {wheel_dir}")
    return pure[-1]


def stage_frontend_app(destination: Path) -> Path:
    """Copies the installed control plane and engine (clipper with its generated wire code,
    clipper_native with its compiled modules and binaries) under `destination`."""
    package = _package_dir("clipper")
    _copy_python_package(package, destination / "clipper")
    _copy_python_package(_package_dir("clipper.wire"), destination / "clipper" / "wire")
    native = importlib.import_module("clipper_native")
    for directory in dict.fromkeys(Path(p) for p in native.__path__):
        _copy_python_package(directory, destination / "clipper_native", keep_binaries=True)
    if not list((destination / "clipper_native").glob("_core*.so")):
        raise ImageBuildError(
            "the native engine (clipper_native._core) is not built; install Clipper with "
            "pip install -e . at the repository root before building the frontend image"
        )
    return destination


def resolve_wheels(
    requirements: Iterable[str], destination: Path, wheelhouse: Path | None = None
) -> None:
    """Copies the wheels `requirements` need (dependencies included) from the wheelhouse into
    `destination`, resolving offline; fills the wheelhouse with `pip wheel` first when it lacks any."""
    wanted = list(requirements)
    if not wanted:
        destination.mkdir(parents=True, exist_ok=True)
        return
    wheelhouse = wheelhouse or default_wheelhouse()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    offline = [sys.executable, "-m", "pip", "download", "--quiet", "--no-index", "--only-binary"]
    offline += [":all:", "--find-links", str(wheelhouse), "--dest", str(destination), *wanted]
    if subprocess.run(offline, capture_output=True, check=False).returncode == 0:
        return
    logger.info(
        "event=wheelhouse_filling wheelhouse=%s requirements=%s", wheelhouse, ",".join(wanted)
    )
    fill = [sys.executable, "-m", "pip", "wheel", "--quiet", "--prefer-binary", "--wheel-dir"]
    _run([*fill, str(wheelhouse), *wanted], f"filling the wheelhouse with {', '.join(wanted)}")
    _run(offline, f"resolving {', '.join(wanted)} from the wheelhouse {wheelhouse}")


def source_digest(context: Path) -> str:
    """A digest of a directory's files (every file's path and bytes; caches skipped)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(context)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def input_digest(kind: str) -> str:
    """A digest of what image `kind` is built from: its Dockerfile, the health check, the Clipper
    sources it stages and the requirements it installs (a new package version in the wheelhouse
    alone does not change it: rebuild with --rebuild)."""
    source = containers_dir()
    package = _package_dir("clipper")
    parts = [
        source_digest(source / IMAGES[kind].directory),
        hashlib.sha256((source / "healthcheck.py").read_bytes()).hexdigest(),
        source_digest(_package_dir("clipper.wire")),
    ]
    if kind == "supervision-reporter":
        parts += [input_digest("frontend"), *REPORTER_REQUIREMENTS]
    elif kind == "frontend":
        parts.append(source_digest(package))
        native = importlib.import_module("clipper_native")
        parts += [source_digest(Path(d)) for d in dict.fromkeys(native.__path__)]
        parts += frontend_requirements()
    else:
        for sdk_file in ("pyproject.toml", "setup.py"):
            parts.append(hashlib.sha256((source / "sdk" / sdk_file).read_bytes()).hexdigest())
        parts += [hashlib.sha256(path.read_bytes()).hexdigest() for path in sdk_native_sources()]
        for module in ("__init__.py", "exceptions.py"):
            parts.append(hashlib.sha256((package / module).read_bytes()).hexdigest())
        parts += [source_digest(package / sub) for sub in ("container", "deployers")]
        parts += [*SDK_REQUIREMENTS, *IMAGES[kind].packages]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def frontend_requirements() -> list[str]:
    """What the frontend image installs: clipper-serving's dependencies (from the checkout's
    pyproject.toml, else the installed distribution's metadata) and FRONTEND_EXTRA_REQUIREMENTS."""
    from importlib import metadata

    pyproject = containers_dir().parent / "pyproject.toml"
    try:
        import tomllib  # Python 3.11+; older ones read the installed metadata

        requirements = list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    except (ImportError, OSError, KeyError, ValueError):
        requirements = [
            r for r in metadata.requires("clipper-serving") or [] if "extra ==" not in r
        ]
    return [*requirements, *FRONTEND_EXTRA_REQUIREMENTS]


def stage_context(kind: str, context: Path, wheelhouse: Path | None = None) -> Path:
    """Stages the build context of one of IMAGES under `context`; returns it."""
    spec = IMAGES[kind]
    source = containers_dir()
    shutil.copyfile(source / spec.directory / "Dockerfile", context / "Dockerfile")
    shutil.copyfile(source / "healthcheck.py", context / "healthcheck.py")
    if kind == "supervision-reporter":
        resolve_wheels(spec.packages, context / "wheels", wheelhouse)
        (context / "wheels" / "requirements.txt").write_text("\n".join(spec.packages) + "\n")
        return context
    if kind == "frontend":
        requirements = frontend_requirements()
        resolve_wheels(requirements, context / "wheels", wheelhouse)
        (context / "wheels" / "requirements.txt").write_text("\n".join(requirements) + "\n")
        stage_frontend_app(context / "app")
        return context
    sdk_wheels = context / "wheels" / "sdk"
    build_sdk_wheel(sdk_wheels)
    resolve_wheels(SDK_REQUIREMENTS, sdk_wheels, wheelhouse)
    if spec.packages:
        resolve_wheels(spec.packages, context / "wheels" / "extra", wheelhouse)
    return context


def _run(command: Sequence[str], what: str, environment: dict[str, str] | None = None) -> None:
    env = {**os.environ, **(environment or {})}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise ImageBuildError(
            f"{what} failed ({' '.join(command[:5])} ...): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


def pick_base_image(client: Any, requested: str | None = None) -> str:
    """The base image to build FROM: `requested`, else $CLIPPER_BASE_IMAGE, else the local
    Debian-built one when present (scripts/build_base_image.sh), else the public slim Python image."""
    if requested:
        return requested
    configured = os.environ.get("CLIPPER_BASE_IMAGE")
    if configured:
        return configured
    import docker.errors

    try:
        client.images.get(LOCAL_BASE_IMAGE)
        return LOCAL_BASE_IMAGE
    except docker.errors.ImageNotFound:
        return PUBLIC_BASE_IMAGE


def build_image(
    client: Any,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str] | None = None,
    nocache: bool = False,
) -> None:
    """`docker build` of a staged context with the legacy builder and host networking (no registry
    needed when the base image is local); every step is logged as an event; raises ImageBuildError.
    `nocache` runs every step again (bench/docker_figures.py times a cold build with it)."""
    started = time.monotonic()
    logger.info("event=image_build_started image=%s context=%s", tag, context)
    error = None
    recent: list[str] = []  # the build's last output lines, for the error message
    for chunk in client.api.build(
        path=str(context),
        tag=tag,
        buildargs=buildargs,
        labels=labels or {},
        network_mode="host",
        nocache=nocache,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        line = str(chunk.get("stream", "")).strip()
        if line:
            recent = [*recent[-19:], line]
        if line.startswith("Step "):
            logger.info("event=image_build_step image=%s step=%r", tag, line)
        if "error" in chunk:
            error = str(chunk.get("error", "")).strip()
    if error is not None:
        output = "\n".join(recent)
        raise ImageBuildError(f"docker build of {tag} failed: {error}\nlast output:\n{output}")
    logger.info("event=image_built image=%s seconds=%.1f", tag, time.monotonic() - started)


def ensure_image(
    client: Any,
    kind: str,
    base_image: str | None = None,
    wheelhouse: Path | None = None,
    rebuild: bool = False,
) -> str:
    """Returns the name of Clipper image `kind`, building it first when it is missing or was built
    from other sources (its digest label differs) or `rebuild`."""
    import docker.errors

    if kind not in IMAGES:
        raise ImageBuildError(f"no Clipper image {kind!r}; choose one of {', '.join(IMAGES)}")
    spec = IMAGES[kind]
    base = pick_base_image(client, base_image)
    build_arguments = {"BASE_IMAGE": base}
    if kind == "supervision-reporter":  # FROM the frontend image, itself built FROM `base`
        build_arguments["FRONTEND_IMAGE"] = ensure_image(client, "frontend", base_image, wheelhouse)
    # Digest of the inputs, not of the staged context: an up-to-date image costs no staging.
    digest = input_digest(kind) + "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", base)
    previous = None
    try:
        previous = client.images.get(spec.name)
        if not rebuild and (previous.labels or {}).get(DIGEST_LABEL) == digest:
            logger.info("event=image_present image=%s", spec.name)
            return spec.name
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix=f"clipper-image-{kind}-") as staging:
        context = stage_context(kind, Path(staging), wheelhouse)
        build_image(client, context, spec.name, build_arguments, {DIGEST_LABEL: digest})
    if previous is not None and client.images.get(spec.name).id != previous.id:
        try:  # the stale build, now untagged; kept while a container or image still uses it
            client.images.remove(previous.id)
        except docker.errors.APIError:
            pass
    return spec.name


def build_model_image(
    client: Any,
    model_dir: Path,
    tag: str,
    parent_image: str,
    pkgs_to_install: Sequence[str],
    labels: dict[str, str],
    wheelhouse: Path | None = None,
) -> None:
    """Builds one model version's image (containers/model-version): `parent_image` plus the saved
    model directory at /model and `pkgs_to_install`, resolved into the context from the wheelhouse."""
    with tempfile.TemporaryDirectory(prefix="clipper-model-") as staging:
        context = Path(staging)
        shutil.copyfile(containers_dir() / "model-version" / "Dockerfile", context / "Dockerfile")
        shutil.copytree(model_dir, context / "model")
        resolve_wheels(pkgs_to_install, context / "wheels", wheelhouse)
        buildargs = {"BASE_IMAGE": parent_image, "PKGS_TO_INSTALL": " ".join(pkgs_to_install)}
        build_image(client, context, tag, buildargs, labels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipper.managers.docker_images",
        description="Build Clipper's Docker images from containers/ (reused when up to date).",
    )
    parser.add_argument("images", nargs="*", help=f"images to build (default: frontend supervision-reporter python-closure "
                        f"sklearn xgboost; any of {', '.join(IMAGES)})")  # fmt: skip
    parser.add_argument("--base-image", help="image to build FROM (default: the local Debian-built "
                        f"{LOCAL_BASE_IMAGE} when present, else {PUBLIC_BASE_IMAGE})")  # fmt: skip
    parser.add_argument("--wheelhouse", type=Path, help="wheels to install from (default: "
                        "$CLIPPER_WHEELHOUSE or ~/.cache/clipper/wheelhouse)")  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="build even when up to date")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import docker

    client = docker.from_env()
    for kind in arguments.images or [
        "frontend",
        "supervision-reporter",
        "python-closure",
        "sklearn",
        "xgboost",
    ]:
        if kind not in IMAGES:
            parser.error(f"no image {kind!r}; choose from {', '.join(IMAGES)}")
        name = ensure_image(
            client, kind, arguments.base_image, arguments.wheelhouse, arguments.rebuild
        )
        size_mb = client.images.get(name).attrs["Size"] / 1e6
        print(f"{name}\t{size_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
