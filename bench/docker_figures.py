"""Issue 10's Docker figures in one run: image sizes, `deploy_python_closure` to the first model answer
(warm: Clipper's images present; cold: plus building the Python closure image from scratch), and W1
throughput with the model replica in a container against a local replica process, in alternating
windows of the same run.

    python bench/docker_figures.py                    # about 3-4 minutes on a quiet machine
    python bench/docker_figures.py --rounds 1 --seconds 2 --deploys 1 --skip-cold   # a quick check

Clusters: a DockerContainerManager cluster (host network; frontend, supervision reporter and
replicas in containers) and a LocalContainerManager cluster (frontend and replica processes), each on
free loopback ports, each serving the same no-op model to the W1 app; both stopped at the end. The
cold build runs the python-closure image's Dockerfile with the build cache off into a private tag
(removed after), so the shared image is never replaced. Writes bench/results/docker_figures.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common
import models

APP = "w1"


def image_sizes(client: Any) -> dict[str, float | None]:
    """Each of Clipper's images present on this host, in MB (None: not built here)."""
    from clipper.managers import docker_images

    sizes: dict[str, float | None] = {}
    for spec in docker_images.IMAGES.values():
        try:
            sizes[spec.name] = round(client.images.get(spec.name).attrs["Size"] / 1e6, 1)
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound: not built on this host
            sizes[spec.name] = None
    return sizes


def cold_closure_image_build_s(client: Any) -> float:
    """Seconds to stage and build the python-closure image with the build cache off (the base image
    present), into a private tag that is removed after."""
    from clipper.managers import docker_images

    tag = f"clipper-bench/python-closure-cold:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clipper-bench-cold-") as staging:
        context = docker_images.stage_context("python-closure", Path(staging))
        base = docker_images.pick_base_image(client)
        docker_images.build_image(client, context, tag, {"BASE_IMAGE": base}, nocache=True)
    elapsed = time.monotonic() - started
    client.images.remove(tag, force=True)
    return elapsed


def deploy_to_first_answer_s(conn: Any, name: str, url: str, offset: float) -> float:
    """Seconds from calling deploy_python_closure (image build, container start, registration) to
    the first answer of the model (not the app's default) on the query port."""
    from clipper.deployers.python import deploy_python_closure

    started = time.monotonic()
    deploy_python_closure(conn, name=name, version="1", input_type="doubles", func=models.noop)
    conn.link_model_to_app(APP, name)
    # Inputs no earlier deploy asked for: the answer cannot come from the cache.
    payload = lambda i: {"input": [offset + i] * 10}
    cluster.wait_for_model_answer(url, payload, timeout_seconds=300)
    return time.monotonic() - started


def unlink_all(conn: Any) -> None:
    for model in conn.get_linked_models(APP):
        conn.unlink_model_from_app(APP, model)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=3, help="warm deploys timed (median)")
    parser.add_argument("--skip-cold", action="store_true", help="do not time the cold build")
    common.add_window_options(parser, 8.0, "alternating W1 windows of each")
    options = parser.parse_args(argv)

    import docker

    from clipper.deployers.python import deploy_python_closure

    models.register_by_value()
    client = docker.from_env()
    loadgen = common.find_loadgen()
    load_before = os.getloadavg()
    sizes = image_sizes(client)
    cold_build_s = None if options.skip_cold else cold_closure_image_build_s(client)

    with contextlib.ExitStack() as stack:
        from clipper import DockerContainerManager

        in_containers = cluster.start_cluster(
            stack, "docker", DockerContainerManager, replica_start_timeout_s=300
        )
        docker_conn, docker_url = in_containers.connection, in_containers.url(APP)
        docker_conn.register_application(APP, "doubles", default_output="-1", slo_micros=100_000)
        # Each timed deploy is a new model (its own image and container); the first also warms
        # Docker's layer cache for the model images' common steps, so it is reported apart.
        deploys = []
        for index in range(options.deploys + 1):
            unlink_all(docker_conn)
            deploys.append(
                deploy_to_first_answer_s(docker_conn, f"noop{index}", docker_url, 1e6 * index)
            )
        warm_s = common.median(deploys[1:]) if len(deploys) > 1 else deploys[0]

        local = cluster.start_local_cluster(stack, "docker-figures", cache_size_bytes=32 << 20)
        local.connection.register_application(APP, "doubles", default_output="-1",
                                              slo_micros=100_000)  # fmt: skip
        deploy_python_closure(local.connection, name="noop", version="1", input_type="doubles",
                              func=models.noop)  # fmt: skip
        local.connection.link_model_to_app(APP, "noop")
        cluster.wait_for_model_answer(local.url(APP), lambda i: {"input": [float(i)] * 10})

        targets = {"container": docker_url, "local": local.url(APP)}
        commands = {
            name: common.loadgen_command(
                loadgen,
                url,
                connections=options.connections,
                duration_seconds=options.seconds,
                warmup_seconds=1.0,
            )
            for name, url in targets.items()
        }
        windows = common.alternating_windows(commands, options.rounds)

    forms = {name: common.windows_summary(windows[name]) for name in targets}
    per_round = common.per_round_ratios(windows["container"], windows["local"])
    results = {
        "machine": common.machine_info(),
        "load_average_before": load_before,
        "source": cluster.source_revision(),
        "settings": vars(options),
        "image_sizes_mb": sizes,
        "deploy_python_closure_to_first_answer_s": {
            "first": round(deploys[0], 2),
            "warm_median": round(warm_s, 2),
            "warm_each": [round(x, 2) for x in deploys[1:]],
            "cold_closure_image_build": None if cold_build_s is None else round(cold_build_s, 1),
            "cold": None if cold_build_s is None else round(cold_build_s + warm_s, 1),
        },
        "w1_closed_loop": forms,
        "w1_container_over_local": common.ratio(
            forms["container"]["throughput_rps"], forms["local"]["throughput_rps"]
        ),
        "w1_container_over_local_median_of_rounds": common.median(per_round),
        "windows": windows,
    }
    path = common.write_results("docker_figures", results)
    print(f"image sizes (MB): {sizes}")
    print(
        f"deploy_python_closure -> first answer: {results['deploy_python_closure_to_first_answer_s']}"
    )
    for name, form in forms.items():
        print(f"W1 closed-{options.connections} {name:9s}: {form['throughput_rps']} req/s, "
              f"p50 {form['p50_us']} us, p99 {form['p99_us']} us, "
              f"non-200 {form['answers_not_200']}, defaults {form['default_answers']}")  # fmt: skip
    print(f"container/local: {results['w1_container_over_local']} (median of per-round ratios "
          f"{results['w1_container_over_local_median_of_rounds']}); results in {path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
