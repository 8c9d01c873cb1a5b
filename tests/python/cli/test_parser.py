"""The CLI's command line (clipper._cli.parser and clipper.cli.main): --version, cluster options
before or after the command, and a quiet exit when stdout is a closed pipe."""

import os
import subprocess
import sys

import pytest

import clipper
from clipper.cli import build_parser


def test_cluster_options_are_accepted_before_or_after_the_command():
    parser = build_parser()
    before = parser.parse_args(["--cluster-name", "a", "--query-port", "5", "-q", "apps"])
    after = parser.parse_args(["apps", "--cluster-name", "a", "--query-port", "5", "-q"])
    for args in (before, after):
        assert (args.cluster_name, args.query_port, args.quiet, args.command) == (
            "a",
            5,
            True,
            "apps",
        )
    mixed = parser.parse_args(["--query-port", "5", "status", "--rpc-port", "6"])
    assert (mixed.query_port, mixed.rpc_port, mixed.management_port) == (5, 6, 1338)
    defaults = parser.parse_args(["apps"])
    assert (defaults.cluster_name, defaults.query_port, defaults.quiet) == (
        "default-cluster",
        1337,
        False,
    )
    assert defaults.state_dir is None and defaults.redis_ip is None


def test_every_command_names_the_function_that_runs_it():
    parser = build_parser()
    for argv in (["start"], ["apps"], ["deploy", "m", "1", "f.py", "--input-type", "doubles"],
                 ["predict", "a", "[1]"], ["link", "a", "m"], ["logs"]):  # fmt: skip
        assert callable(parser.parse_args(argv).handler)


def test_version_names_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"clipper {clipper.__version__} ")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["deploy", "--help"]])
def test_a_closed_stdout_pipe_ends_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # whoever reads our output has gone, like `| head -1` after its line
    try:
        result = subprocess.run(
            [sys.executable, "-m", "clipper.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode in (0, 141)
    assert b"Traceback" not in result.stderr and b"Broken pipe" not in result.stderr


def test_images_build_builds_an_up_to_date_image_through_the_docker_manager(capsys):
    """`clipper images build` runs the Docker image builder (reusing an image that is up to date)."""
    import shutil
    import subprocess

    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("needs a running Docker Engine (scripts/setup.sh installs and starts it)")
    from clipper.cli import main

    assert main(["images", "build", "python-closure"]) == 0
    assert "clipper/python-closure-container" in capsys.readouterr().out
