"""ClipperConnection against a real management REST API on loopback (in-process, with a recording
engine double) and a scripted container manager, so the admin workflow is tested without processes."""

import json

import pytest

from clipper import ClipperConnection
from clipper.management import ManagementService
from clipper.management.auth import write_new_token
from clipper.management.http_api import ManagementHTTPServer
from clipper.managers import ContainerManager
from clipper.state import EmbeddedStateStore


class RecordingEngine:
    def __init__(self):
        self.applied = []
        self.connected_replicas = []

    @property
    def config(self):
        return self.applied[-1]

    def current_version(self, model):
        return next(
            m["version"] for m in self.config["models"] if m["name"] == model and m["current"]
        )

    def apply_config(self, config_json):
        self.applied.append(json.loads(config_json))

    def replicas(self):
        return list(self.connected_replicas)


class ScriptedContainerManager(ContainerManager):
    """Replicas "connect" at once by appearing in the engine double, unless `failing` says otherwise."""

    cluster_name = "scripted"

    def __init__(self, admin_addr, engine, state_dir):
        self.admin_addr = admin_addr
        # Where ClipperConnection finds the management token, as with LocalContainerManager.
        self.state_dir = state_dir
        self.engine = engine
        self.calls = []
        self.failing = None  # a failure description makes new replicas "exit" with it
        self.silent = False  # replicas start but never connect
        self.current_during_deploy = {}

    def start_clipper(self, cache_size_bytes=0, io_threads=1, rpc_thread="shared"):
        self.calls.append(("start_clipper", cache_size_bytes, io_threads))

    def connect(self):
        self.calls.append(("connect",))

    def get_admin_addr(self):
        return self.admin_addr

    def get_query_addr(self):
        return "127.0.0.1:1337"

    def get_metric_addr(self):
        return "127.0.0.1:1390"

    def build_model(
        self,
        name,
        version,
        model_data_path,
        base_image="default",
        container_registry=None,
        pkgs_to_install=None,
    ):
        self.calls.append(
            ("build_model", name, version, model_data_path, list(pkgs_to_install or []))
        )
        return f"/built/{name}/{version}"

    def deploy_model(self, name, version, input_type, image, num_replicas=1):
        self.calls.append(("deploy_model", name, version, input_type, image, num_replicas))
        models = self.engine.config["models"]
        self.current_during_deploy[(name, version)] = [
            m["version"] for m in models if m["name"] == name and m["current"]
        ]
        self._start(name, version, input_type, num_replicas)

    def _start(self, name, version, input_type, count):
        if self.failing or self.silent:
            return
        existing = self.get_num_replicas(name, version)
        for replica_id in range(existing, existing + count):
            self.engine.connected_replicas.append(
                {
                    "model_name": name,
                    "model_version": version,
                    "replica_id": replica_id,
                    "input_type": input_type,
                    "inflight_batches": 0,
                }
            )

    def _mine(self, name, version):
        return [
            r
            for r in self.engine.connected_replicas
            if (r["model_name"], r["model_version"]) == (name, version)
        ]

    def get_num_replicas(self, name, version):
        return len(self._mine(name, version))

    def set_num_replicas(self, name, version, input_type, image, num_replicas):
        self.calls.append(("set_num_replicas", name, version, image, num_replicas))
        current = self._mine(name, version)
        if num_replicas > len(current):
            self._start(name, version, input_type, num_replicas - len(current))
        else:
            for replica in current[num_replicas:]:
                self.engine.connected_replicas.remove(replica)

    def find_failed_replicas(self, name, version):
        return [f"replica 0 exited: {self.failing}"] if self.failing else []

    def stop_models(self, models):
        self.calls.append(("stop_models", {k: list(v) for k, v in models.items()}))
        self.engine.connected_replicas = [
            r
            for r in self.engine.connected_replicas
            if r["model_version"] not in models.get(r["model_name"], ())
        ]

    def stop_all_model_containers(self):
        self.calls.append(("stop_all_model_containers",))
        self.engine.connected_replicas = []

    def stop_all(self, graceful=True, clear_state=False):
        self.calls.append(("stop_all", graceful, clear_state))

    def get_logs(self, logging_dir):
        return []


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def manager(tmp_path, engine):
    with EmbeddedStateStore(tmp_path / "state") as store:
        service = ManagementService(store, engine)
        service.restore()
        token = write_new_token(tmp_path / "state")
        server = ManagementHTTPServer(("127.0.0.1", 0), service, management_token=token)
        server.start()
        yield ScriptedContainerManager(f"127.0.0.1:{server.port}", engine, tmp_path / "state")
        server.stop()


@pytest.fixture
def conn(manager):
    connection = ClipperConnection(manager, replica_start_timeout_s=1.0)
    connection.connect()
    return connection
