"""`clipper k8s render`: the command's options reach the manifests, and what it prints is a YAML stream of
valid Kubernetes objects (checked against the schemas, as the manifests' own tests do)."""

import argparse
import io
from contextlib import redirect_stdout

import pytest
import yaml

from clipper._cli.parser import add_cluster_options
from clipper.exceptions import ClipperException
from clipper.managers.kubernetes_cli import add_kubernetes_commands, parse_model_spec

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (pip) holds the Kubernetes JSON schemas"
)


def _run(argv):
    """Parse and run `argv` as the CLI does: cluster options before or after the command."""
    parser = argparse.ArgumentParser(prog="clipper")
    add_cluster_options(parser, suppress_defaults=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, handler):
        command = commands.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        return command

    add_kubernetes_commands(add)
    args = parser.parse_args(argv)
    output = io.StringIO()
    with redirect_stdout(output):
        assert args.handler(args) == 0
    return list(yaml.safe_load_all(output.getvalue()))


def test_render_prints_valid_manifests_of_the_cluster_and_its_models():
    documents = _run(
        ["--cluster-name", "prod", "k8s", "render", "--namespace", "serving", "--num-frontends",
         "2", "--service-type", "LoadBalancer", "--model", "sum:1:doubles:registry.example.com:5000/sum:1:3",
         "--query-port", "8080", "--redis-ip", "10.1.2.3"]
    )  # fmt: skip
    for document in documents:
        kubernetes_validate.validate(document, "1.34.0", strict=True)
    names = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert ("Service", "query-frontend-at-prod") in names
    assert not any("redis" in name for _, name in names)  # an external Redis was named
    models = [d for d in documents if d["metadata"]["labels"].get("ai.clipper.role") == "model"]
    assert len(models) == 2  # one per frontend
    container = models[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com:5000/sum:1"
    assert models[0]["spec"]["replicas"] == 3
    query = next(d for d in documents if d["metadata"]["name"] == "query-frontend-at-prod")
    assert query["spec"]["type"] == "LoadBalancer" and query["spec"]["ports"][0]["port"] == 8080
    assert {d["metadata"]["namespace"] for d in documents} == {"serving"}
    # The supervision reporter, its read-only account and its token come with the cluster.
    for kind in ("ServiceAccount", "Role", "RoleBinding", "Deployment"):
        assert (kind, "supervision-reporter-at-prod") in names
    assert ("Secret", "supervision-token-at-prod") in names


def test_model_specs_take_images_with_tags_and_ports():
    assert parse_model_spec("m:1:ints:img") == ("m", "1", "ints", "img", 1)
    assert parse_model_spec("m:1:ints:img:v2") == ("m", "1", "ints", "img:v2", 1)
    assert parse_model_spec("m:1:ints:host:5000/img:v2:4") == (
        "m",
        "1",
        "ints",
        "host:5000/img:v2",
        4,
    )
    with pytest.raises(ClipperException, match="NAME:VERSION:INPUT_TYPE:IMAGE"):
        parse_model_spec("m:1")


def test_the_clipper_command_has_k8s_render(capsys):
    from clipper.cli import main

    assert main(["k8s", "render", "--cluster-name", "cli", "--namespace", "ns"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["labels"]["ai.clipper.container.label"] for d in documents} == {"cli"}
    assert ("Service", "query-frontend-at-cli") in {
        (d["kind"], d["metadata"]["name"]) for d in documents
    }
