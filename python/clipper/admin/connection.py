"""`ClipperConnection`: Clipper's admin API, with its method names and meanings.

Owns the user-facing workflow: configuration goes through the management REST API, processes through the
container manager, and the order between them (a deployed version becomes current only once its replicas
have connected). Blocking calls from the user's thread; nothing here is on the query path.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import urllib.error
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clipper.admin.management_client import ManagementClient, urlopen_direct
from clipper.exceptions import (
    ClipperException,
    ConfigurationError,
    ContainerlessModelError,
    DeploymentError,
    DuplicateObjectError,
    ManagementAPIError,
    UnconnectedException,
    UnknownObjectError,
)
from clipper.management.auth import read_token
from clipper.managers.container_manager import ContainerManager
from clipper.managers.supervision import with_supervision
from clipper.selection.admin_methods import SelectionAdminMethods
from clipper.state.cluster_state import (
    canonical_input_type,
    check_batching,
    check_labels,
    check_name,
)
from clipper_native import defaults

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE_BYTES = defaults.CACHE_SIZE_BYTES
NO_CONTAINER = "NO_CONTAINER"
_REPLICA_POLL_INTERVAL_S = 0.05
# Cache metrics of the engine's /metrics (e.g. clipper_cache_hits_total), summarised by
# inspect_instance() under "cache".
_CACHE_METRIC = re.compile(r"^clipper_(?:prediction_)?cache_([a-z_]+?)(?:_total)?$")


class _Unchanged:
    """Marks a keyword argument left out (where None has a meaning of its own)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


class ClipperConnection(SelectionAdminMethods):
    def __init__(
        self,
        container_manager: ContainerManager,
        replica_start_timeout_s: float = 120.0,
        drain_timeout_s: float = 10.0,
        management_token: str | None = None,
    ) -> None:
        """`management_token` is the cluster's management API token; leave it None to read it from
        the cluster's state directory (`<state_dir>/management_token`, on the cluster's host).
        `replica_start_timeout_s` bounds how long `deploy_model` waits for new replicas to connect
        to the frontend before it gives up (and says why, from the replicas' logs);
        `drain_timeout_s` how long the stop calls let a version's replicas finish the batches they
        hold before stopping them."""
        self.cm = container_manager
        self.replica_start_timeout_s = replica_start_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.connected = False
        self._client: ManagementClient | None = None
        self._management_token = management_token

    # ---- cluster lifecycle ----------------------------------------------------------------------------

    def start_clipper(
        self,
        query_frontend_image: str | None = None,
        mgmt_frontend_image: str | None = None,
        frontend_exporter_image: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE_BYTES,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
        rpc_thread: str = "shared",
        allow_unauthenticated_management: bool = False,
        allow_unauthenticated_replicas: bool = False,
    ) -> None:
        """Start the cluster (frontend with `cache_size` bytes of prediction cache, 0 = off) and
        connect to it. The image arguments are Clipper's; local processes need none.
        `allow_unauthenticated_management=True` lets the management API be called without the
        cluster's token (loopback only, logged as a warning), for Clipper's original `clipper_admin`
        client; see docs/security.md.
        `allow_unauthenticated_replicas=True` lets any local process register as a model's replica
        without the cluster's CURVE keys (loopback only, logged as a warning), for model containers
        built without them; by default the manager hands the keys to the replicas it starts.
        `rpc_thread`: "shared" runs the model RPC on the single I/O thread's loop (lowest latency),
        "dedicated" gives it a thread of its own (more throughput when cores are free)."""
        if num_frontend_replicas != 1:
            raise ClipperException(
                f"num_frontend_replicas={num_frontend_replicas}: one frontend per cluster is "
                "supported; start another cluster (another cluster_name and ports) for more"
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ClipperException(f"cache_size must be a number of bytes >= 0, got {cache_size!r}")
        if rpc_thread not in ("shared", "dedicated"):
            raise ClipperException(f"rpc_thread={rpc_thread!r}: use 'shared' or 'dedicated'")
        # Passed only when asked for, so managers without the option keep working.
        unauthenticated: dict[str, bool] = {}
        if allow_unauthenticated_management:
            unauthenticated["allow_unauthenticated_management"] = True
        if allow_unauthenticated_replicas:
            unauthenticated["allow_unauthenticated_replicas"] = True
        self.cm.start_clipper(
            cache_size_bytes=cache_size,
            io_threads=qf_http_thread_pool_size,
            rpc_thread=rpc_thread,
            **unauthenticated,
        )
        self._attach()
        self._restore_replicas()
        logger.info("event=clipper_started cluster=%s", self.cm.cluster_name)

    def connect(self) -> None:
        """Attach to the running cluster of the container manager."""
        self.cm.connect()
        self._attach()
        logger.info("event=clipper_connected cluster=%s", self.cm.cluster_name)

    def stop_all(self, graceful: bool = True, clear_state: bool = False) -> None:
        """Stop every model replica and the frontend. The configuration stays in the state store, so the
        next `start_clipper` restores apps, models, links and the replicas of each version;
        `clear_state=True` forgets it (the next start is empty, as with Clipper's own Redis)."""
        self.cm.stop_all(graceful=graceful, clear_state=clear_state)
        self.connected = False
        self._client = None
        logger.info("event=clipper_stopped cluster=%s", self.cm.cluster_name)

    def get_query_addr(self) -> str:
        self._require_client()
        return self.cm.get_query_addr()

    def get_metric_addr(self) -> str:
        self._require_client()
        return self.cm.get_metric_addr()

    # ---- applications ---------------------------------------------------------------------------------

    def register_application(
        self,
        name: str,
        input_type: str,
        default_output: str,
        slo_micros: int,
        overload: str | None = None,
    ) -> None:
        """Create an application answering at `/<name>/predict`; `default_output` is returned when no
        model answers within `slo_micros` (start around 100000 = 100 ms). `overload` says how a query
        refused at arrival (it could not be answered within the SLO, or a queue bound was reached) is
        answered: "reject" (the default: 429 or 503 with Retry-After) or "default" (the default output)."""
        if not isinstance(default_output, str):
            default_output = str(default_output)
        body: dict[str, Any] = {
            "name": name,
            "input_type": input_type,
            "default_output": default_output,
            "latency_slo_micros": slo_micros,
        }
        if overload is not None:
            body["overload"] = overload
        self._call("add_app", body)
        logger.info("event=application_registered app=%s input_type=%s", name, input_type)

    def unregister_application(self, name: str) -> None:
        self._call("delete_app", {"name": name})
        logger.info("event=application_unregistered app=%s", name)

    def delete_application(self, name: str) -> None:
        """Deprecated spelling of `unregister_application`."""
        warnings.warn(
            "delete_application is deprecated: use unregister_application",
            DeprecationWarning,
            stacklevel=2,
        )
        self.unregister_application(name)

    def link_model_to_app(self, app_name: str, model_name: str) -> None:
        self._call("add_model_links", {"app_name": app_name, "model_names": [model_name]})
        logger.info("event=model_linked app=%s model=%s", app_name, model_name)

    def unlink_model_from_app(self, app_name: str, model_name: str) -> None:
        self._call("delete_model_links", {"app_name": app_name, "model_names": [model_name]})
        logger.info("event=model_unlinked app=%s model=%s", app_name, model_name)

    def get_all_apps(self, verbose: bool = False) -> list[Any]:
        """Application names, or with `verbose` one dict per app (name, input_type, default_output,
        latency_slo_micros, linked_models, overload)."""
        return list(self._call("get_all_applications", {"verbose": bool(verbose)}))

    def get_app_info(self, name: str) -> dict[str, Any] | None:
        """The app's description, or None when no such app exists."""
        info = self._call("get_application", {"name": name})
        return info or None

    def get_linked_models(self, app_name: str) -> list[str]:
        return list(self._call("get_linked_models", {"app_name": app_name}))

    # ---- models -----------------------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str = "default",
        container_registry: str | None = None,
        pkgs_to_install: Sequence[str] | None = None,
    ) -> str:
        """Package a saved model directory so the container manager can run it; returns the image."""
        self._require_client()
        name = check_name("model name", name)
        version = check_name("model version", version)
        return self.cm.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )

    def deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: Sequence[str] | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
        max_batch_size: int | None = None,
        batch_wait_timeout_micros: int = 0,
    ) -> None:
        """Start `num_replicas` replicas of `image` and register the version, which becomes the model's
        current version once its replicas have connected (so queries never hit a version with none).
        A replica that fails to start raises DeploymentError with its log, and nothing stays behind.

        Batching: `batch_size` -1 adapts batch sizes to the SLO (AIMD), k > 0 fixes them at most k;
        `max_batch_size` caps any batch; `batch_wait_timeout_micros` > 0 lets a batch wait that long
        for more inputs (delayed batching)."""
        name = check_name("model name", name)
        version = check_name("model version", version)
        input_type = canonical_input_type(input_type)
        labels = check_labels(labels)
        batching = check_batching(batch_size, max_batch_size, batch_wait_timeout_micros)
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ConfigurationError(f"num_replicas must be at least 1, got {num_replicas!r}")
        if self.get_model_info(name, version) is not None:
            raise DuplicateObjectError(
                f"model '{name}' version '{version}' already exists; deploy under a new version, or "
                f"stop this one first with stop_versioned_models({{'{name}': ['{version}']}})"
            )
        has_current_version = self._current_version_or_none(name) is not None
        self._add_model(
            name,
            version,
            input_type,
            image,
            labels,
            batching,
            not has_current_version,
            num_replicas,
        )
        try:
            self.cm.deploy_model(name, version, input_type, image, num_replicas)
            self._wait_for_replicas(name, version, num_replicas)
        except BaseException:
            self._undo_deployment(name, version)
            raise
        if has_current_version:
            self._call("set_model_version", {"model_name": name, "model_version": version})
        logger.info(
            "event=model_deployed model=%s version=%s replicas=%d", name, version, num_replicas
        )

    def build_and_deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        model_data_path: str,
        base_image: str = "default",
        labels: Sequence[str] | None = None,
        container_registry: str | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
        pkgs_to_install: Sequence[str] | None = None,
        max_batch_size: int | None = None,
        batch_wait_timeout_micros: int = 0,
    ) -> None:
        """`build_model` then `deploy_model` the image it built."""
        check_batching(batch_size, max_batch_size, batch_wait_timeout_micros)  # before building
        image = self.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        self.deploy_model(
            name,
            version,
            input_type,
            image,
            labels,
            num_replicas,
            batch_size,
            max_batch_size,
            batch_wait_timeout_micros,
        )

    def register_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str | None = None,
        labels: Sequence[str] | None = None,
        batch_size: int = -1,
        max_batch_size: int | None = None,
        batch_wait_timeout_micros: int = 0,
    ) -> None:
        """Register a version without starting replicas; it becomes the model's current version at
        once. Without `image` the replicas run elsewhere and connect to the RPC port themselves; with
        one (e.g. what `build_model` returned), `set_num_replicas` can start them later."""
        self._add_model(
            check_name("model name", name),
            check_name("model version", version),
            canonical_input_type(input_type),
            image or NO_CONTAINER,
            check_labels(labels),
            check_batching(batch_size, max_batch_size, batch_wait_timeout_micros),
            make_current=True,
        )
        logger.info("event=model_registered model=%s version=%s image=%s", name, version, image)

    def set_model_version(self, name: str, version: str, num_replicas: int | None = None) -> None:
        """Make `version` current (roll forward or back). With `num_replicas`, that version is first
        scaled to that many connected replicas, so the switch never lands on an empty version."""
        version = str(version)
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)
        info = self.get_model_info(name, version)
        has_container = info is not None and info["container_name"] != NO_CONTAINER
        if has_container and not self._connected_replicas(name, version):
            logger.warning(
                "event=model_version_without_replicas model=%s version=%s advice=%r",
                name,
                version,
                "queries answer the default until replicas connect; pass num_replicas",
            )
        self._call("set_model_version", {"model_name": name, "model_version": version})
        logger.info("event=model_version_set model=%s version=%s", name, version)

    def get_current_model_version(self, name: str) -> str:
        version = self._current_version_or_none(name)
        if version is None:
            raise UnknownObjectError(
                f"model '{name}' has no registered version; deploy it first with deploy_model"
            )
        return version

    def set_model_batching(
        self,
        name: str,
        version: str | None = None,
        batch_size: int | None = None,
        max_batch_size: Any = UNCHANGED,
        batch_wait_timeout_micros: int | None = None,
    ) -> None:
        """Change how a model version (default: the current one) batches, at once and without a
        restart. Arguments left out keep their value; `max_batch_size=None` removes the cap."""
        body: dict[str, Any] = {"model_name": name}
        if version is not None:
            body["model_version"] = str(version)
        if batch_size is not None:
            body["batch_size"] = batch_size
        if max_batch_size is not UNCHANGED:
            body["max_batch_size"] = max_batch_size
        if batch_wait_timeout_micros is not None:
            body["batch_wait_timeout_micros"] = batch_wait_timeout_micros
        self._call("set_model_batching", body)
        logger.info("event=model_batching_set model=%s version=%s", name, version or "current")

    def get_model_batching(self, name: str, version: str | None = None) -> dict[str, Any]:
        """A model version's batching (default: the current one): {"model_name", "model_version",
        "configured": {batch_size, max_batch_size, batch_wait_timeout_micros}, "engine": what the
        engine reports for it (e.g. the batch size it learned), or None}."""
        body: dict[str, Any] = {"model_name": name}
        if version is not None:
            body["model_version"] = str(version)
        result: dict[str, Any] = self._call("get_batching_state", body)
        return result

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        """ "name:version" strings, or with `verbose` one dict per version."""
        return list(self._call("get_all_models", {"verbose": bool(verbose)}))

    def get_model_info(self, name: str, version: str) -> dict[str, Any] | None:
        info = self._call("get_model", {"model_name": name, "model_version": str(version)})
        return info or None

    # ---- replicas -------------------------------------------------------------------------------------

    def get_num_replicas(self, name: str, version: str | None = None) -> int:
        self._require_client()
        version = str(version) if version is not None else self.get_current_model_version(name)
        return self.cm.get_num_replicas(name, version)

    def set_num_replicas(self, name: str, num_replicas: int, version: str | None = None) -> None:
        """Start or stop replicas of a version (default: current) until `num_replicas` run; waits for
        new ones to connect."""
        version = str(version) if version is not None else self.get_current_model_version(name)
        info = self.get_model_info(name, version)
        if info is None:
            raise UnknownObjectError(
                f"model '{name}' has no version '{version}'; deploy it before scaling it"
            )
        if info["container_name"] == NO_CONTAINER:
            raise ContainerlessModelError(
                f"model '{name}' version '{version}' was registered without a container "
                "(register_model), so Clipper cannot scale it; start or stop its replicas where they "
                "run, or deploy it with deploy_model"
            )
        for failure in self.cm.find_failed_replicas(name, version):
            # Exited before this call (a crash): replaced below and reported here, not blamed on
            # the replicas this call starts.
            logger.warning(
                "event=replica_found_exited model=%s version=%s detail=%r", name, version, failure
            )
        self.cm.set_num_replicas(
            name, version, info["input_type"], info["container_name"], num_replicas
        )
        if num_replicas > 0:
            self._wait_for_replicas(name, version, num_replicas)
        self._record_num_replicas(name, version, num_replicas)
        logger.info(
            "event=replicas_set model=%s version=%s replicas=%d", name, version, num_replicas
        )

    def get_all_model_replicas(self, verbose: bool = False) -> list[Any]:
        """Connected replicas: "name:version:replica_id", or with `verbose` one dict each with its
        supervision ("state", "restarts", "last_exit_reason"), followed by the replicas that exited
        and wait to be restarted ("state": "backing-off" or "crash-looping")."""
        replicas = list(self._call("get_all_containers", {"verbose": bool(verbose)}))
        if verbose:
            replicas = with_supervision(replicas, self.cm.supervision_report())
        return replicas

    def get_model_replica_info(
        self, name: str, version: str, replica_id: int
    ) -> dict[str, Any] | None:
        info = self._call(
            "get_container",
            {"model_name": name, "model_version": str(version), "replica_id": int(replica_id)},
        )
        return info or None

    # ---- stopping ---------------------------------------------------------------------------------------

    def stop_models(self, model_names: str | Sequence[str]) -> None:
        """Stop every version of the named models: replicas stop and the versions are unregistered
        (links stay, so a redeployed model is served by its apps again)."""
        if isinstance(model_names, str):
            model_names = [model_names]
        all_versions = self.get_all_models(verbose=True)
        for name in model_names:
            infos = [info for info in all_versions if info["model_name"] == name]
            # The current version goes last: the service refuses to delete it while others exist.
            ordered = [i["model_version"] for i in infos if not i["is_current_version"]]
            ordered += [i["model_version"] for i in infos if i["is_current_version"]]
            if ordered:
                self.stop_versioned_models({name: ordered})

    def stop_versioned_models(self, model_versions_dict: Mapping[str, Sequence[str]]) -> None:
        """Unregister and stop the given {model name: [versions]}. Each version first leaves the
        configuration (no new queries reach it), then its replicas finish the batches they hold
        (up to `drain_timeout_s`), then they stop: no query is cut off."""
        for name, versions in model_versions_dict.items():
            for version in versions:
                self._call(
                    "delete_versioned_model", {"model_name": name, "model_version": str(version)}
                )
                self._wait_for_drain(name, str(version))
                self.cm.stop_models({name: [str(version)]})
                logger.info("event=model_version_stopped model=%s version=%s", name, version)

    def stop_inactive_model_versions(self, model_names: str | Sequence[str]) -> None:
        """Stop every version of the named models except the current one."""
        if isinstance(model_names, str):
            model_names = [model_names]
        inactive: dict[str, list[str]] = {}
        for info in self.get_all_models(verbose=True):
            if info["model_name"] in model_names and not info["is_current_version"]:
                inactive.setdefault(info["model_name"], []).append(info["model_version"])
        self.stop_versioned_models(inactive)

    def stop_all_model_containers(self) -> None:
        """Stop every model replica; the configuration (apps, models, links) stays, with no replicas
        (a later `start_clipper` starts none; `set_num_replicas` starts them again)."""
        self._require_client()
        self.cm.stop_all_model_containers()
        for info in self.get_all_models(verbose=True):
            if info.get("num_replicas"):
                self._record_num_replicas(info["model_name"], info["model_version"], 0)
        logger.info("event=model_containers_stopped cluster=%s", self.cm.cluster_name)

    # ---- observing ------------------------------------------------------------------------------------

    def get_clipper_logs(self, logging_dir: str = "clipper_logs/") -> list[str]:
        """Copy the frontend's and replicas' logs under `logging_dir`; returns the files written."""
        return self.cm.get_logs(logging_dir)

    def inspect_instance(self) -> dict[str, Any]:
        """The frontend's metrics: {"name{labels}": value} for every sample of its Prometheus
        `/metrics`, plus "cache": the prediction cache's statistics ({"hits", "misses", ...,
        "hit_ratio"} as the engine reports them; empty where it reports none)."""
        url = f"http://{self.get_metric_addr()}/metrics"
        try:
            with urlopen_direct(url, timeout=10.0) as response:
                text = response.read().decode("utf-8")
        except (urllib.error.URLError, OSError) as error:
            raise ClipperException(f"cannot read metrics from {url}: {error}") from error
        samples: dict[str, Any] = dict(parse_prometheus_text(text))
        samples["cache"] = cache_statistics(samples)
        return samples

    def test_predict_function(
        self, query: Mapping[str, Any], func: Callable[[list[Any]], list[Any]], input_type: str
    ) -> list[Any]:
        """Run `func` locally the way a replica would: after a cloudpickle round trip, on the query's
        inputs converted as the replica receives them. Catches pickling and shape errors early."""
        import cloudpickle
        import numpy as np

        input_type = canonical_input_type(input_type)
        if "input_batch" in query:
            inputs = list(query["input_batch"])
        elif "input" in query:
            inputs = [query["input"]]
        else:
            raise ClipperException('the query needs "input" or "input_batch", like the REST API')
        dtypes = {"ints": np.int32, "floats": np.float32, "doubles": np.float64}
        if input_type in dtypes:
            inputs = [np.asarray(x, dtype=dtypes[input_type]) for x in inputs]
        elif input_type == "bytes":
            import base64

            inputs = [base64.b64decode(x) for x in inputs]
        round_tripped = cloudpickle.loads(cloudpickle.dumps(func))
        return list(round_tripped(inputs))

    # ---- internals --------------------------------------------------------------------------------------

    def _attach(self) -> None:
        token: str | Callable[[], str | None] | None = self._management_token
        if token is None:
            state_dir = getattr(self.cm, "state_dir", None)
            token = functools.partial(read_token, state_dir)
        self._client = ManagementClient(self.cm.get_admin_addr(), token=token)
        self._client.call("ping")  # a refused token fails here, with the advice, not later
        self.connected = True

    def _require_client(self) -> ManagementClient:
        if not self.connected or self._client is None:
            raise UnconnectedException()
        return self._client

    def _call(self, operation: str, body: dict[str, Any]) -> Any:
        return self._require_client().call(operation, body)

    def _current_version_or_none(self, name: str) -> str | None:
        for info in self.get_all_models(verbose=True):
            if info["model_name"] == name and info["is_current_version"]:
                return str(info["model_version"])
        return None

    def _add_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: list[str],
        batching: tuple[int, int | None, int],
        make_current: bool,
        num_replicas: int = 0,
    ) -> None:
        batch_size, max_batch_size, batch_wait_timeout_micros = batching
        self._call(
            "add_model",
            {
                "model_name": name,
                "model_version": version,
                "input_type": input_type,
                "labels": labels,
                "container_name": image,
                "model_data_path": "DEPRECATED",
                "batch_size": batch_size,
                "max_batch_size": max_batch_size,
                "batch_wait_timeout_micros": batch_wait_timeout_micros,
                "num_replicas": num_replicas,
                "make_current": make_current,
            },
        )

    def _record_num_replicas(self, name: str, version: str, num_replicas: int) -> None:
        self._call(
            "set_model_replicas",
            {"model_name": name, "model_version": version, "num_replicas": num_replicas},
        )

    def _restore_replicas(self) -> None:
        """Start the replicas the configuration records but that do not run (after `stop_all`, or
        on a machine where the cluster's replicas are gone). A version that cannot start is
        reported in the log and the cluster keeps running."""
        for info in self.get_all_models(verbose=True):
            wanted = int(info.get("num_replicas", 0))
            name, version = info["model_name"], info["model_version"]
            if info["container_name"] == NO_CONTAINER or wanted <= 0:
                continue
            if self.cm.get_num_replicas(name, version) >= wanted:
                continue
            try:
                self.cm.set_num_replicas(
                    name, version, info["input_type"], info["container_name"], wanted
                )
                self._wait_for_replicas(name, version, wanted)
            except ClipperException as error:
                logger.warning(
                    "event=replica_restore_failed model=%s version=%s cause=%r",
                    name,
                    version,
                    str(error),
                )
                continue
            logger.info(
                "event=replicas_restored model=%s version=%s replicas=%d", name, version, wanted
            )

    def _connected_replicas(self, name: str, version: str) -> list[dict[str, Any]]:
        return [
            replica
            for replica in self.get_all_model_replicas(verbose=True)
            if replica["model_name"] == name
            and replica["model_version"] == version
            and replica.get("state", "running") == "running"
        ]

    def _wait_for_drain(self, name: str, version: str) -> None:
        """Wait until the version's replicas hold no batch on two looks in a row (an idle replica
        is handed any queued batch at once), or `drain_timeout_s` passed."""
        deadline = time.monotonic() + self.drain_timeout_s
        idle_looks = 0
        while True:
            busy = sum(
                int(r.get("inflight_batches", 0)) for r in self._connected_replicas(name, version)
            )
            idle_looks = idle_looks + 1 if busy == 0 else 0
            if idle_looks >= 2:
                return
            if time.monotonic() > deadline:
                logger.warning(
                    "event=drain_timeout model=%s version=%s inflight_batches=%d",
                    name,
                    version,
                    busy,
                )
                return
            time.sleep(_REPLICA_POLL_INTERVAL_S)

    def _wait_for_replicas(self, name: str, version: str, count: int) -> None:
        deadline = time.monotonic() + self.replica_start_timeout_s
        reported = -1
        while True:
            failures = self.cm.find_failed_replicas(name, version)
            if failures:
                raise DeploymentError(
                    f"model '{name}' version '{version}': a replica stopped while starting; fix the "
                    "model (or its pkgs_to_install) and deploy again.\n" + "\n".join(failures)
                )
            connected = len(self._connected_replicas(name, version))
            if connected != reported:
                logger.info(
                    "event=replicas_connecting model=%s version=%s connected=%d wanted=%d",
                    name,
                    version,
                    connected,
                    count,
                )
                reported = connected
            if connected >= count:
                return
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"model '{name}' version '{version}': {connected} of {count} replicas connected "
                    f"to the frontend within {self.replica_start_timeout_s:.0f} s; see the replica "
                    "logs (get_clipper_logs()) for what they are doing"
                )
            time.sleep(_REPLICA_POLL_INTERVAL_S)

    def _undo_deployment(self, name: str, version: str) -> None:
        """Leave no trace of a failed deployment, so the same version can be deployed again."""
        try:
            self.cm.stop_models({name: [version]})
        except Exception:
            logger.exception(
                "event=undo_deploy_failed step=stop model=%s version=%s", name, version
            )
        try:
            self._call("delete_versioned_model", {"model_name": name, "model_version": version})
        except (ManagementAPIError, ClipperException):
            logger.exception(
                "event=undo_deploy_failed step=unregister model=%s version=%s", name, version
            )


def cache_statistics(samples: Mapping[str, Any]) -> dict[str, float]:
    """The prediction cache's statistics among parsed metrics: clipper_cache_<stat>[_total] becomes
    <stat> (hits, misses, ...); "hit_ratio" is added when hits and misses are both reported."""
    statistics: dict[str, float] = {}
    for key, value in samples.items():
        match = _CACHE_METRIC.match(key)
        if match and isinstance(value, float):
            statistics[match.group(1)] = value
    lookups = statistics.get("hits", 0.0) + statistics.get("misses", 0.0)
    if "hits" in statistics and "misses" in statistics:
        statistics["hit_ratio"] = statistics["hits"] / lookups if lookups else 0.0
    return statistics


def parse_prometheus_text(text: str) -> dict[str, float]:
    """{"metric{labels}": value} for every sample line of a Prometheus text exposition."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.rpartition("}") if "}" in line else ("", "", line)
        if name:
            key, value_text = name + "}", rest.split()[0] if rest.split() else ""
        else:
            parts = line.split()
            if len(parts) < 2:
                continue
            key, value_text = parts[0], parts[1]
        try:
            samples[key] = float(value_text)
        except ValueError:
            continue
    return samples
