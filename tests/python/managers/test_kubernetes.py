"""KubernetesContainerManager's API calls, made by the real official client over real HTTP to a small
server on loopback that records every request and answers as the Kubernetes API server does for the
few endpoints the manager uses (create, list by label selector, read status, patch the scale
subresource, delete). No Kubernetes cluster can run on this machine; this checks the exchanges the
manager has with one, not a cluster's behaviour."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from clipper import ClipperException
from clipper.exceptions import DeploymentError
from clipper.managers.kubernetes import KubernetesContainerManager

_KINDS = {"deployments": "Deployment", "services": "Service", "persistentvolumeclaims": "PersistentVolumeClaim",
          "secrets": "Secret", "serviceaccounts": "ServiceAccount", "roles": "Role",
          "rolebindings": "RoleBinding"}  # fmt: skip


class FakeApiServer:
    """Objects by (resource, name); requests as (method, path, query, body)."""

    def __init__(self):
        self.objects = {}
        self.requests = []
        self.pods = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self, method=None):
        return [(m, p) for m, p, _, _ in self.requests if method is None or m == method]

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                text = isinstance(body, str)  # pod logs are plain text
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                query = parse_qs(url.query)
                with api.lock:
                    api.requests.append((self.command, url.path, query, body))
                    status, answer = api.route(self.command, url.path, query, body, self.headers)
                self._answer(status, answer)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        return Handler

    def route(self, method, path, query, body, headers):
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]] or /apis/apps/v1/namespaces/...
        index = parts.index("namespaces")
        namespace, rest = parts[index + 1], parts[index + 2 :]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        if resource == "pods":
            if name and sub == "log":
                return 200, f"log of {name}"
            return 200, {"kind": "PodList", "apiVersion": "v1", "items": self._select(self.pods, query)}
        key = (resource, name)
        if method == "POST":
            key = (resource, body["metadata"]["name"])
            if key in self.objects:
                return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
            body["metadata"].setdefault("namespace", namespace)
            self.objects[key] = body
            return 201, body
        if method == "GET" and name is None:
            items = [o for (r, _), o in self.objects.items() if r == resource]
            return 200, {"kind": f"{_KINDS[resource]}List", "items": self._select(items, query)}
        if key not in self.objects:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        obj = self.objects[key]
        if method == "DELETE":
            del self.objects[key]
            # Deployments answer a Status; Services and claims answer the deleted object.
            if resource == "deployments":
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return 200, obj
        if sub == "scale" and method == "PATCH":
            assert headers["Content-Type"] in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/json-patch+json",
            )
            obj["spec"]["replicas"] = body["spec"]["replicas"]
            return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": obj["metadata"],
                         "spec": {"replicas": obj["spec"]["replicas"]}}  # fmt: skip
        if sub == "status":
            return 200, {**obj, "status": {"readyReplicas": obj["spec"].get("replicas", 0)}}
        if method == "PATCH" and "spec" in obj:
            obj["spec"].update(body.get("spec", {}))
        elif method == "PATCH":  # a Role: its rules
            obj.update(body)
        return 200, obj

    @staticmethod
    def _select(items, query):
        selector = query.get("labelSelector", [""])[0]
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        return [o for o in items if wanted.items() <= (o["metadata"].get("labels") or {}).items()]


@pytest.fixture
def api():
    server = FakeApiServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _manager(api, **options):
    configuration = client.Configuration(host=api.host)
    return KubernetesContainerManager(
        cluster_name="demo",
        namespace="ml",
        api_client=client.ApiClient(configuration),
        startup_timeout_s=10,
        **options,
    )


def test_start_clipper_creates_redis_and_frontends_and_waits_until_ready(api):
    manager = _manager(api, num_frontends=2)
    manager.start_clipper(cache_size_bytes=0)
    created = sorted(path.rsplit("/", 1)[1] + ":" + body["metadata"]["name"]
                     for method, path, _, body in api.requests if method == "POST")  # fmt: skip
    assert created == [
        "deployments:query-frontend-0-at-demo",
        "deployments:query-frontend-1-at-demo",
        "deployments:redis-at-demo",
        "deployments:supervision-reporter-at-demo",
        "persistentvolumeclaims:redis-at-demo",
        "rolebindings:supervision-reporter-at-demo",
        "roles:supervision-reporter-at-demo",
        "secrets:rpc-keys-at-demo",
        "secrets:supervision-token-at-demo",
        "serviceaccounts:supervision-reporter-at-demo",
        "services:mgmt-frontend-at-demo",
        "services:query-frontend-0-at-demo",
        "services:query-frontend-1-at-demo",
        "services:query-frontend-at-demo",
        "services:redis-at-demo",
    ]
    assert all("/namespaces/ml/" in path for _, path in api.calls("POST"))
    frontend = api.objects[("deployments", "query-frontend-0-at-demo")]
    args = frontend["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cache-size-bytes") + 1] == "0"
    # The RPC port's keys: generated into a Secret that the frontends read by reference.
    keys = json.loads(api.objects[("secrets", "rpc-keys-at-demo")]["stringData"]["server-keys"])
    assert len(keys["server_secret_key"]) == 40 and len(keys["client_public_keys"]) == 1
    env = {e["name"]: e for e in frontend["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLIPPER_RPC_SERVER_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "rpc-keys-at-demo", "key": "server-keys"}
    # The supervision reporter's token: one Secret, read by the frontends and the reporter.
    token = api.objects[("secrets", "supervision-token-at-demo")]["stringData"]["token"]
    assert len(token) >= 32
    assert env["CLIPPER_SUPERVISION_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "supervision-token-at-demo", "key": "token", "optional": True}
    reporter = api.objects[("deployments", "supervision-reporter-at-demo")]["spec"]["template"]["spec"]
    assert reporter["serviceAccountName"] == "supervision-reporter-at-demo"
    assert reporter["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "supervision-token-at-demo", "key": "token"}
    assert ("GET", "/apis/apps/v1/namespaces/ml/deployments/query-frontend-1-at-demo/status") in (
        api.calls("GET")
    )
    manager.connect()
    assert manager.get_query_addr() == "query-frontend-at-demo.ml.svc:1337"
    assert manager.get_admin_addr() == "mgmt-frontend-at-demo.ml.svc:1338"


def test_starting_again_updates_the_objects_in_place(api):
    _manager(api).start_clipper()
    keys = api.objects[("secrets", "rpc-keys-at-demo")]["stringData"]
    token = api.objects[("secrets", "supervision-token-at-demo")]["stringData"]
    before = len(api.requests)
    _manager(api, service_type="NodePort", num_frontends=1).start_clipper()
    patched = sorted(path for method, path, _, _ in api.requests[before:] if method == "PATCH")
    assert patched == [
        "/api/v1/namespaces/ml/services/mgmt-frontend-at-demo",
        "/api/v1/namespaces/ml/services/query-frontend-0-at-demo",
        "/api/v1/namespaces/ml/services/query-frontend-at-demo",
        "/api/v1/namespaces/ml/services/redis-at-demo",
        "/apis/apps/v1/namespaces/ml/deployments/query-frontend-0-at-demo",
        "/apis/apps/v1/namespaces/ml/deployments/redis-at-demo",
        "/apis/apps/v1/namespaces/ml/deployments/supervision-reporter-at-demo",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/roles/supervision-reporter-at-demo",
    ]
    assert api.objects[("services", "query-frontend-at-demo")]["spec"]["type"] == "NodePort"
    # The RPC keys are kept: replicas started earlier hold them.
    assert api.objects[("secrets", "rpc-keys-at-demo")]["stringData"] == keys
    # So is the supervision token: running frontends and the reporter hold it.
    assert api.objects[("secrets", "supervision-token-at-demo")]["stringData"] == token


def test_connect_without_a_cluster_says_how_to_start_one(api):
    with pytest.raises(ClipperException, match="no Clipper cluster 'demo' runs in namespace 'ml'"):
        _manager(api).connect()


def test_scaling_patches_the_scale_of_each_frontends_deployment(api):
    manager = _manager(api, num_frontends=2)
    manager.deploy_model("sum", "1", "doubles", "registry.example.com/sum:1", num_replicas=1)
    assert manager.get_num_replicas("sum", "1") == 1
    before = len(api.requests)

    manager.set_num_replicas("sum", "1", "doubles", "registry.example.com/sum:1", 3)

    patches = [(path, body) for method, path, _, body in api.requests[before:] if method == "PATCH"]
    assert patches == [
        (f"/apis/apps/v1/namespaces/ml/deployments/sum-1-deployment-at-{i}-at-demo/scale",
         {"spec": {"replicas": 3}})
        for i in range(2)
    ]  # fmt: skip
    assert manager.get_num_replicas("sum", "1") == 3
    # Scaling a version that has no Deployments yet creates them.
    manager.set_num_replicas("sum", "2", "doubles", "registry.example.com/sum:2", 2)
    assert manager.get_num_replicas("sum", "2") == 2
    with pytest.raises(DeploymentError, match="at least 0"):
        manager.set_num_replicas("sum", "1", "doubles", "x", -1)


def test_a_version_change_adds_the_new_deployments_then_removes_the_old(api):
    manager = _manager(api)
    manager.deploy_model("sum", "1", "doubles", "registry.example.com/sum:1", num_replicas=2)
    manager.deploy_model("sum", "2", "doubles", "registry.example.com/sum:2", num_replicas=2)
    assert {name for kind, name in api.objects if kind == "deployments"} == {
        "sum-1-deployment-at-0-at-demo",
        "sum-2-deployment-at-0-at-demo",
    }
    manager.stop_models({"sum": ["1"]})
    assert ("DELETE", "/apis/apps/v1/namespaces/ml/deployments/sum-1-deployment-at-0-at-demo") in (
        api.calls("DELETE")
    )
    assert {name for kind, name in api.objects if kind == "deployments"} == {
        "sum-2-deployment-at-0-at-demo"
    }
    # Deploying a version again updates its Deployment in place.
    manager.deploy_model("sum", "2", "doubles", "registry.example.com/sum:2b", num_replicas=1)
    updated = api.objects[("deployments", "sum-2-deployment-at-0-at-demo")]
    assert updated["spec"]["replicas"] == 1
    assert updated["spec"]["template"]["spec"]["containers"][0]["image"].endswith("sum:2b")


def test_stop_all_removes_every_object_of_the_cluster_and_keeps_the_state_claim(api):
    manager = _manager(api)
    manager.start_clipper()
    manager.deploy_model("sum", "1", "doubles", "registry.example.com/sum:1")
    manager.stop_all()
    # Kept: the state, the keys and token, and the reporter's account (removed with the state).
    assert sorted(api.objects) == [
        ("persistentvolumeclaims", "redis-at-demo"),
        ("rolebindings", "supervision-reporter-at-demo"),
        ("roles", "supervision-reporter-at-demo"),
        ("secrets", "rpc-keys-at-demo"),
        ("secrets", "supervision-token-at-demo"),
        ("serviceaccounts", "supervision-reporter-at-demo"),
    ]
    manager.start_clipper()
    manager.stop_all(clear_state=True)
    assert api.objects == {}


def test_pod_statuses_read_in_clippers_supervision_vocabulary(api, tmp_path):
    manager = _manager(api)
    labels = {"ai.clipper.container.label": "demo", "ai.clipper.role": "model",
              "ai.clipper.model_container.label": "sum_1"}  # fmt: skip
    annotations = {"ai.clipper.model": json.dumps({"name": "sum", "version": "1"})}
    api.pods = [
        {
            "metadata": {"name": "sum-a", "labels": labels, "annotations": annotations},
            "status": {
                "containerStatuses": [
                    {
                        "name": "model", "image": "i", "imageID": "", "ready": False,
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ]
            },
        },
        {
            "metadata": {"name": "sum-b", "labels": labels, "annotations": annotations},
            "status": {"containerStatuses": [
                {"name": "model", "image": "i", "imageID": "", "ready": True, "restartCount": 0,
                 "state": {"running": {}}}]},
        },
    ]  # fmt: skip
    report = manager.supervision_report()
    assert [(r["pod"], r["state"], r["restarts"], r["last_exit_reason"]) for r in report] == [
        ("sum-a", "crash-looping", 4,
         "killed by signal 9 (SIGKILL) (out of memory: over its memory limit)"),
        ("sum-b", "running", 0, ""),
    ]
    (failure,) = manager.find_failed_replicas("sum", "1")
    assert "sum-a: CrashLoopBackOff" in failure and "restarted 4 times" in failure
    logs = manager.get_logs(str(tmp_path))
    assert [Path(path).read_text() for path in logs] == ["log of sum-a", "log of sum-b"]
    assert [path.rsplit("/", 1)[1] for path in logs] == ["sum-a.log", "sum-b.log"]


def test_building_without_a_registry_says_how_nodes_get_the_image(api):
    with pytest.raises(DeploymentError, match="registry="):
        _manager(api).build_model("sum", "1", "/nonexistent")


def test_the_supervision_reporter_lists_the_clusters_pods_by_label_and_reports_per_frontend(api):
    from clipper.managers.supervision_reporter import KubernetesReports

    def pod(name, role, frontend, ip=None, restarts=0):
        labels = {"ai.clipper.container.label": "demo", "ai.clipper.role": role,
                  "ai.clipper.frontend": str(frontend)}  # fmt: skip
        status = {"podIP": ip} if ip else {}
        if role == "model":
            last = {"terminated": {"exitCode": 137, "reason": "Error"}} if restarts else {}
            status["containerStatuses"] = [
                {"name": "model", "image": "i", "imageID": "", "ready": True,
                 "restartCount": restarts, "state": {"running": {}}, "lastState": last}
            ]  # fmt: skip
        annotations = {"ai.clipper.model": json.dumps({"name": "sum", "version": "1"})}
        return {"metadata": {"name": name, "labels": labels, "annotations": annotations},
                "status": status}  # fmt: skip

    other_cluster = pod("elsewhere", "model", 0, restarts=9)
    other_cluster["metadata"]["labels"]["ai.clipper.container.label"] = "other"
    api.pods = [
        pod("f0", "frontend", 0, ip="10.0.0.4"),
        pod("f1", "frontend", 1, ip="10.0.0.5"),
        pod("m0", "model", 0, restarts=2),
        pod("m1", "model", 1),
        other_cluster,
    ]
    core = client.CoreV1Api(client.ApiClient(client.Configuration(host=api.host)))
    reports = KubernetesReports(core, "ml", "demo", 1338)()
    assert {address: [(s["model_name"], s["restarts"], s["last_exit_reason"]) for s in slots]
            for address, slots in reports.items()} == {
        "10.0.0.4:1338": [("sum", 2, "killed by signal 9 (SIGKILL)")],
        "10.0.0.5:1338": [("sum", 0, "")],
    }  # fmt: skip
    # Pods only, in the cluster's namespace, selected by the cluster's and the role's labels.
    listed = [(path, query["labelSelector"][0]) for method, path, query, _ in api.requests]
    assert listed == [
        ("/api/v1/namespaces/ml/pods", "ai.clipper.container.label=demo,ai.clipper.role=frontend"),
        ("/api/v1/namespaces/ml/pods", "ai.clipper.container.label=demo,ai.clipper.role=model"),
    ]
