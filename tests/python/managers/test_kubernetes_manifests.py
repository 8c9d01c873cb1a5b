"""Kubernetes manifests: every object the manager would apply validates against the Kubernetes JSON
schemas (kubernetes-validate, strict: unknown fields fail) and round-trips through the official
client's models; names, labels, selectors, probes and resources are what Clipper's layout needs. No
cluster can run here, so these are checked on the rendered objects."""

import json
import re
from dataclasses import replace

import pytest
import yaml
from kubernetes import client

from clipper.container.credentials import ReplicaCredentials
from clipper.exceptions import ClipperException, ConfigurationError
from clipper.management.frontend import FrontendOptions, build_argument_parser
from clipper.management.replica_keys import new_cluster_keys
from clipper.managers.kubernetes import KubernetesContainerManager, render_manifests
from clipper.managers.kubernetes_manifests import (
    CLIPPER_LABEL,
    MODEL_LABEL,
    ClusterSpec,
    PodResources,
    cluster_objects,
    dns_label,
    label_value,
    to_dict,
)
from clipper_native import defaults

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (pip) holds the Kubernetes JSON schemas"
)

# The oldest Kubernetes release still commonly run, and a current one.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
MODELS = [
    ("sum-model", "1", "doubles", "clipper-model/demo-sum-model:1", 2),
    ("Model_With.Odd-Name", "2024-01-01T10:00", "strings", "registry.example.com/m:2", 1),
]


def _all_objects(**spec_options):
    return cluster_objects(
        ClusterSpec(**spec_options), MODELS, keys=new_cluster_keys(), supervision_token="t" * 43
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "spec_options",
    [
        {},
        {"num_frontends": 3, "service_type": "LoadBalancer", "registry": "registry.example.com/ml"},
        {"redis_ip": "10.0.0.5", "metrics_port": 0, "image_pull_policy": "Always"},
    ],
)
def test_every_object_validates_against_the_kubernetes_schemas(version, spec_options):
    objects = _all_objects(**spec_options)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(to_dict(obj), version, strict=True)


def test_objects_round_trip_through_the_clients_models():
    api = client.ApiClient()
    for obj in _all_objects(num_frontends=2):
        data = to_dict(obj)
        model_name = type(obj).__name__
        # Deserialising is what the client does with the API server's answers.
        restored = api._ApiClient__deserialize(data, model_name)
        assert type(restored) is type(obj)
        assert api.sanitize_for_serialization(restored) == data


def test_the_yaml_stream_holds_every_object_once():
    manager = KubernetesContainerManager(cluster_name="demo", namespace="ml", num_frontends=2)
    documents = list(yaml.safe_load_all(render_manifests(manager, MODELS)))
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents)
    assert len(kinds) == len(set(kinds))
    assert ("Service", "query-frontend-at-demo") in kinds
    assert ("Service", "mgmt-frontend-at-demo") in kinds
    assert ("PersistentVolumeClaim", "redis-at-demo") in kinds
    assert {d["metadata"]["namespace"] for d in documents} == {"ml"}
    assert all(d["metadata"]["labels"][CLIPPER_LABEL] == "demo" for d in documents)


def test_frontends_sit_behind_one_query_service_and_share_redis():
    spec = ClusterSpec(cluster_name="c", num_frontends=3, service_type="NodePort")
    objects = {(o.kind, o.metadata.name): o for o in cluster_objects(spec)}
    query = objects[("Service", "query-frontend-at-c")]
    assert query.spec.type == "NodePort"
    assert [p.port for p in query.spec.ports] == [1337, 1390]
    frontends = [objects[("Deployment", f"query-frontend-{i}-at-c")] for i in range(3)]
    for index, deployment in enumerate(frontends):
        labels = deployment.spec.template.metadata.labels
        # The query Service's selector picks every frontend; each RPC Service only its own.
        assert query.spec.selector.items() <= labels.items()
        rpc = objects[("Service", f"query-frontend-{index}-at-c")]
        assert rpc.spec.selector == labels and [p.port for p in rpc.spec.ports] == [7000]
        assert deployment.spec.selector.match_labels == labels
        (container,) = deployment.spec.template.spec.containers
        args = container.args
        assert args[args.index("--redis-address") + 1] == "redis-at-c.default.svc:6379"
        assert args[args.index("--bind-address") + 1] == "0.0.0.0"
        # The frontend keeps its state directory owner-only: one it creates below the volume's root
        # (which kubelet makes root-owned and writable by all), not the root itself.
        (mount,) = container.volume_mounts
        assert args[args.index("--state-dir") + 1].startswith(mount.mount_path + "/")
        assert container.readiness_probe.http_get.path == "/readyz"
        assert container.liveness_probe.http_get.path == "/healthz"
        assert container.readiness_probe.http_get.port == 1337
    # Redis keeps its data on a claim and never runs twice on it.
    redis = objects[("Deployment", "redis-at-c")]
    assert redis.spec.strategy.type == "Recreate"
    assert redis.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "redis-at-c"


def test_an_external_redis_replaces_the_in_cluster_one():
    spec = ClusterSpec(cluster_name="c", redis_ip="redis.example.internal", redis_port=6380)
    objects = cluster_objects(spec)
    assert not [o for o in objects if "redis" in o.metadata.name]
    frontend = next(o for o in objects if o.kind == "Deployment")
    args = frontend.spec.template.spec.containers[0].args
    assert args[args.index("--redis-address") + 1] == "redis.example.internal:6380"


def test_model_deployments_connect_each_to_its_frontend_with_the_wanted_replicas():
    spec = ClusterSpec(
        cluster_name="c",
        num_frontends=2,
        registry="registry.example.com/team",
        model_resources={"sum-model": PodResources(cpus=2, memory="2Gi", gpus=1)},
    )
    deployments = [o for o in cluster_objects(spec, MODELS) if o.metadata.labels.get(MODEL_LABEL)]
    assert len(deployments) == 4  # two versions x two frontends
    sums = [d for d in deployments if d.metadata.labels[MODEL_LABEL] == "sum-model_1"]
    for index, deployment in enumerate(sums):
        assert deployment.spec.replicas == 2
        (container,) = deployment.spec.template.spec.containers
        assert container.image == "registry.example.com/team/clipper-model/demo-sum-model:1"
        args = container.args
        assert args[args.index("--frontend") + 1] == f"tcp://query-frontend-{index}-at-c.default.svc:7000"
        assert args[args.index("--input-type") + 1] == "doubles"
        assert container.resources.requests == {"cpu": "2000m", "memory": "2Gi", "nvidia.com/gpu": "1"}
        assert container.resources.limits == {"memory": "2Gi", "nvidia.com/gpu": "1"}
        assert container.readiness_probe._exec.command[-1] == "replica"
        assert deployment.spec.strategy.rolling_update.max_unavailable == 0
        # The replica's CURVE keys come from the cluster's Secret, never written into the spec.
        (credentials,) = [e for e in container.env if e.name == "CLIPPER_RPC_CREDENTIALS"]
        assert credentials.value is None
        reference = credentials.value_from.secret_key_ref
        assert (reference.name, reference.key) == ("rpc-keys-at-c", "replica-credentials")
        # A pod cannot reach the frontend's shared-memory socket: the replica does not ask for it.
        assert {e.name: e.value for e in container.env}["CLIPPER_TRANSPORT"] == "zmq"
    # An image naming its registry keeps it; odd names become valid names and label values.
    odd = next(d for d in deployments if d not in sums)
    assert odd.spec.template.spec.containers[0].image == "registry.example.com/m:2"
    assert len(odd.metadata.name) <= 63
    assert '"version": "2024-01-01T10:00"' in odd.metadata.annotations["ai.clipper.model"]


def test_shared_memory_options_are_accepted_only_off_and_nothing_rendered_asks_for_rings():
    # The Local and Docker managers' keyword arguments at their defaults, as code written for them
    # passes them: accepted, and the rendering is the one without them.
    manager = KubernetesContainerManager(
        cluster_name="demo",
        shm_transport=False,
        replica_shm_spin_micros=0,
        shm_response_spin_micros=0,
        shm_response_spin_cost_micros=defaults.SHM_RESPONSE_SPIN_COST_MICROS,
    )
    text = render_manifests(manager, MODELS)
    assert "shm-response-spin" not in text and "CLIPPER_SHM_SPIN_MICROS" not in text
    documents = list(yaml.safe_load_all(text))
    replicas = [d for d in documents if MODEL_LABEL in d["metadata"]["labels"] and d["kind"] == "Deployment"]
    assert replicas
    for deployment in replicas:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {e["name"]: e.get("value") for e in container["env"]}["CLIPPER_TRANSPORT"] == "zmq"


@pytest.mark.parametrize(
    "options",
    [
        {"shm_transport": True},
        {"replica_shm_spin_micros": 20},
        {"shm_response_spin_micros": 20},
        {"replica_shm_spin_micros": True},
        {"shm_response_spin_micros": "0"},
        {"shm_response_spin_cost_micros": 0},
        {"shm_response_spin_cost_micros": 20},
    ],
)
def test_shared_memory_options_are_refused_naming_the_option_and_why(options):
    ((name, value),) = options.items()
    with pytest.raises(ClipperException, match=rf"^{name}={re.escape(repr(value))}: .*ZeroMQ"):
        KubernetesContainerManager(cluster_name="demo", **options)


def _frontend_options(manager):
    """What each frontend of `manager`'s rendering runs with: its container's args read by the
    frontend's own argument parser."""
    documents = list(yaml.safe_load_all(render_manifests(manager, MODELS)))
    frontends = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("query-frontend-")
    ]
    assert len(frontends) == manager.spec.num_frontends
    options = []
    for deployment in frontends:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        options.append(FrontendOptions(**vars(build_argument_parser().parse_args(container["args"]))))
    return options


def test_replica_prefetch_full_batches_reaches_every_frontend_and_is_left_out_at_its_default():
    # An engine option, valid over ZeroMQ (replicas in pods), unlike the shared-memory ones.
    # The default is on: turning it off is what must reach every frontend.
    manager = KubernetesContainerManager(cluster_name="demo", num_frontends=2, replica_prefetch_full_batches=False)
    assert [o.replica_prefetch_full_batches for o in _frontend_options(manager)] == [False, False]
    # A start keeps it (start_clipper replaces the spec's engine settings).
    assert replace(manager.spec, io_threads=2).replica_prefetch_full_batches is False
    # At the default no flag is rendered, so a frontend image older than the option still starts.
    plain = KubernetesContainerManager(cluster_name="demo")
    assert "prefetch" not in render_manifests(plain, MODELS)
    assert [o.replica_prefetch_full_batches for o in _frontend_options(plain)] == [
        defaults.REPLICA_PREFETCH_FULL_BATCHES
    ]
    for obj in cluster_objects(manager.spec, MODELS, keys=new_cluster_keys(), supervision_token="t" * 43):
        kubernetes_validate.validate(to_dict(obj), KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(ClipperException, match=r"^replica_prefetch_full_batches='yes': use True or False"):
        KubernetesContainerManager(cluster_name="demo", replica_prefetch_full_batches="yes")


def test_the_rpc_keys_secret_holds_both_halves_of_the_clusters_keys():
    keys = new_cluster_keys()
    (secret,) = [o for o in cluster_objects(ClusterSpec(cluster_name="c"), keys=keys) if o.kind == "Secret"]
    assert secret.metadata.name == "rpc-keys-at-c" and secret.type == "Opaque"
    server = json.loads(secret.string_data["server-keys"])
    assert server["server_secret_key"] == keys.server_secret_key
    assert server["client_public_keys"] == [keys.replica.client_public_key]
    replica = ReplicaCredentials.parse(secret.string_data["replica-credentials"], "the Secret")
    assert replica == keys.replica
    assert cluster_objects(ClusterSpec(cluster_name="c"))[0].kind != "Secret"  # only when given keys


def test_names_and_label_values_are_made_valid_without_collisions():
    assert dns_label("sum-1-deployment-at-0-at-c") == "sum-1-deployment-at-0-at-c"
    a, b = dns_label("Model_A"), dns_label("model-a")
    assert a != b and a.startswith("model-a-")
    long = dns_label("x" * 200)
    assert len(long) <= 63
    assert label_value("sum-model_1") == "sum-model_1"
    assert len(label_value("m" * 100 + "_1")) <= 63
    assert label_value("a:b") != label_value("a;b")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cluster_name": "Has_Upper"}, "cluster_name"),
        ({"service_type": "ExternalName"}, "service_type"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
        ({"num_frontends": 0}, "num_frontends"),
        ({"query_port": 0}, "query_port"),
        ({"namespace": "Bad Namespace"}, "namespace"),
    ],
)
def test_invalid_options_name_the_option(options, message):
    with pytest.raises(ConfigurationError, match=message):
        ClusterSpec(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"cpus": 0}, "cpus"), ({"memory": "lots"}, "memory"), ({"gpus": -1}, "gpus")],
)
def test_invalid_resources_name_the_field(options, message):
    with pytest.raises(ConfigurationError, match=message):
        PodResources(**options)


def test_the_supervision_reporter_may_only_read_pods_of_its_namespace():
    spec = ClusterSpec(cluster_name="c", namespace="serving", num_frontends=2)
    objects = {(o.kind, o.metadata.name): o for o in cluster_objects(spec, supervision_token="t" * 43)}
    name = "supervision-reporter-at-c"
    role = objects[("Role", name)]
    assert [(r.api_groups, r.resources, r.verbs) for r in role.rules] == [
        ([""], ["pods"], ["get", "list", "watch"])
    ]
    binding = objects[("RoleBinding", name)]
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", name)
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", name, "serving")
    ]
    assert ("ServiceAccount", name) in objects
    # No ClusterRole: nothing outside the namespace.
    assert not any(kind.startswith("Cluster") for kind, _ in objects)
    deployment = objects[("Deployment", name)]
    assert deployment.spec.replicas == 1 and deployment.spec.strategy.type == "Recreate"
    pod = deployment.spec.template.spec
    assert pod.service_account_name == name
    (container,) = pod.containers
    assert container.image == "clipper/supervision-reporter:0.1.0"  # the image's entrypoint runs it
    assert container.args == [
        "kubernetes", "--cluster-name=c", "--namespace=serving", "--management-port=1338"
    ]
    assert container.security_context.run_as_non_root
    assert container.security_context.allow_privilege_escalation is False
    token_ref = container.env[0].value_from.secret_key_ref
    assert (container.env[0].name, token_ref.name, token_ref.key) == (
        "CLIPPER_SUPERVISION_TOKEN", "supervision-token-at-c", "token"
    )
    secret = objects[("Secret", "supervision-token-at-c")]
    assert secret.string_data == {"token": "t" * 43}
    # Every frontend reads the same token (optional: a frontend without it takes no reports).
    for index in range(2):
        frontend = objects[("Deployment", f"query-frontend-{index}-at-c")]
        env = {e.name: e for e in frontend.spec.template.spec.containers[0].env}
        ref = env["CLIPPER_SUPERVISION_TOKEN"].value_from.secret_key_ref
        assert (ref.name, ref.key, ref.optional) == ("supervision-token-at-c", "token", True)
    # Only when a token is given is its Secret rendered.
    assert ("Secret", "supervision-token-at-c") not in {
        (o.kind, o.metadata.name) for o in cluster_objects(spec)
    }


def test_exclusive_cpus_make_a_guaranteed_pod_the_static_cpu_manager_pins():
    resources = PodResources(cpus=2, memory="1Gi", exclusive_cpus=True).requirements()
    assert resources.requests == {"cpu": "2000m", "memory": "1Gi"}
    assert resources.limits == {"cpu": "2000m", "memory": "1Gi"}
    for wrong in ({"cpus": 1.5, "memory": "1Gi"}, {"cpus": 2}, {"memory": "1Gi"}):
        with pytest.raises(ConfigurationError, match="exclusive_cpus"):
            PodResources(exclusive_cpus=True, **wrong)
