"""The management service: every configuration change is validated here, saved to the state store and
pushed to the engine as a full snapshot, in that one place.

Owns the rules between objects (links need an existing app and model of the same input type, versions are
unique, ...) and the operations behind Clipper's `/admin/<operation>` paths. It knows nothing about HTTP
(see `http_api.py`). Called from the HTTP server's request threads, and with a shared store (Redis) from
the store-follower thread that adopts other writers' changes; one lock serialises changes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from clipper.exceptions import (
    ConfigurationError,
    DuplicateObjectError,
    InputTypeMismatchError,
    StaleStateError,
    StateStoreError,
    UnknownObjectError,
)
from clipper.management.engine_link import EngineControl, engine_config_json
from clipper.management.selection_feedback import SelectionFeedbackWorker, selection_binding
from clipper.management.selection_operations import SelectionOperations, check_link_allowed
from clipper.state.cluster_state import (
    APP_OVERLOAD,
    Application,
    ClusterState,
    Model,
    ModelVersion,
    canonical_input_type,
    check_batching,
    check_labels,
    check_name,
    check_num_replicas,
    check_overload,
    check_slo_micros,
)
from clipper.state.selection_state import open_selection_store
from clipper.state.store import StateStore

logger = logging.getLogger(__name__)

# Clipper's placeholder for a model whose replicas run outside the cluster's control.
NO_CONTAINER = "NO_CONTAINER"

# A change that loses a race against another writer of a shared store is re-run on fresh state this
# many times before giving up.
_MAX_COMMIT_ATTEMPTS = 3

Body = dict[str, Any]


class ManagementService:
    def __init__(self, store: StateStore, engine: EngineControl) -> None:
        self._store = store
        self._engine = engine
        self._lock = threading.Lock()
        self._state = ClusterState()
        # Operation name (the REST path after /admin/) -> handler taking the JSON body.
        self.operations: dict[str, Callable[[Body], Any]] = {
            "ping": self.ping,
            "add_app": self.add_app,
            "delete_app": self.delete_app,
            "add_model_links": self.add_model_links,
            "delete_model_links": self.delete_model_links,
            "add_model": self.add_model,
            "set_model_version": self.set_model_version,
            "delete_versioned_model": self.delete_versioned_model,
            "get_all_applications": self.get_all_applications,
            "get_application": self.get_application,
            "get_linked_models": self.get_linked_models,
            "get_all_models": self.get_all_models,
            "get_model": self.get_model,
            "get_all_containers": self.get_all_containers,
            "get_container": self.get_container,
            "get_state": self.get_state,
            "get_config": self.get_config,
            "set_model_batching": self.set_model_batching,
            "set_model_replicas": self.set_model_replicas,
            "get_batching_state": self.get_batching_state,
        }
        # The selection layer: policy operations, and the worker that keeps per-user learned state.
        self.selection_worker = SelectionFeedbackWorker(
            self, open_selection_store(store), selection_binding(engine)
        )
        self.selection = SelectionOperations(self, self.selection_worker)
        self.operations.update(self.selection.operations)

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    def restore(self) -> ClusterState:
        """Load the stored configuration and push it to the engine (on every frontend start)."""
        with self._lock:
            state = self._store.load()
            self._push(state)
            self._state = state
        logger.info(
            "event=state_restored store=%s revision=%d apps=%d models=%d",
            self._store.description,
            state.revision,
            len(state.applications),
            len(state.models),
        )
        return state.clone()

    def refresh(self) -> bool:
        """Adopt what another writer of a shared store saved: when the stored revision differs from
        the one served, load it and push it to the engine. Returns True when something changed."""
        with self._lock:
            if self._store.revision() == self._state.revision:
                return False
            state = self._store.load()
            if state.revision == self._state.revision:
                return False
            self._push(state)
            self._state = state
        logger.info(
            "event=state_followed store=%s revision=%d", self._store.description, state.revision
        )
        return True

    def follow_store(self, stop: threading.Event, wait_s: float = 0.5) -> None:
        """Apply other writers' changes as they are saved, until `stop` is set (a store-follower
        thread runs this when the store is shared)."""
        while not stop.is_set():
            try:
                self._store.wait_for_change(self.revision, wait_s)
                if not stop.is_set():
                    self.refresh()
            except (StateStoreError, ConfigurationError) as error:
                logger.warning("event=state_follow_failed cause=%r", str(error))
                stop.wait(wait_s)

    @property
    def revision(self) -> int:
        with self._lock:
            return self._state.revision

    @property
    def state(self) -> ClusterState:
        with self._lock:
            return self._state.clone()

    # ----------------------------------------------------------------------------------------------
    # Applications

    def ping(self, body: Body) -> Any:
        return {"status": "PONG"}

    def add_app(self, body: Body) -> Any:
        name = check_name("application name", _field(body, "add_app", "name", str))
        input_type = canonical_input_type(_field(body, "add_app", "input_type", str))
        default_output = _field(body, "add_app", "default_output", str)
        slo_value = body.get("latency_slo_micros", body.get("slo_micros"))
        if slo_value is None:
            raise ConfigurationError("add_app needs 'latency_slo_micros' (an integer)")
        slo_micros = check_slo_micros(slo_value)
        overload = check_overload(body.get("overload", APP_OVERLOAD))

        def change(state: ClusterState) -> str:
            if name in state.applications:
                raise DuplicateObjectError(
                    f"application '{name}' already exists; unregister it first or choose another name"
                )
            state.applications[name] = Application(
                name, input_type, default_output, slo_micros, overload=overload
            )
            return f"Successfully added application with name '{name}'"

        result = self._commit("add_app", change)
        self.selection.forget_app(name)  # a new app starts with nothing learned (e.g. after clear)
        return result

    def delete_app(self, body: Body) -> Any:
        name = _field(body, "delete_app", "name", str)

        def change(state: ClusterState) -> str:
            if state.applications.pop(name, None) is None:
                raise UnknownObjectError(f"application '{name}' does not exist; nothing to delete")
            return f"Successfully deleted application with name '{name}'"

        result = self._commit("delete_app", change)
        self.selection.forget_app(name)
        return result

    def add_model_links(self, body: Body) -> Any:
        app_name = _field(body, "add_model_links", "app_name", str)
        model_names = _string_list(body, "add_model_links", "model_names")
        if not model_names or len(set(model_names)) != len(model_names):
            raise ConfigurationError(
                f"add_model_links needs distinct model names for application '{app_name}', got "
                f"{model_names!r}"
            )

        def change(state: ClusterState) -> str:
            app = _existing_app(state, app_name)
            # The policy says how many models it serves (duplicates are refused below).
            check_link_allowed(app, [m for m in model_names if m not in app.linked_models])
            for model_name in model_names:
                link_one(state, app, model_name)
            return f"Successfully linked {', '.join(model_names)} to application '{app_name}'"

        def link_one(state: ClusterState, app: Application, model_name: str) -> None:
            current = state.current_version(model_name)
            if current is None:
                raise UnknownObjectError(
                    f"model '{model_name}' does not exist; deploy it with deploy_model (or register "
                    f"it with register_model) before linking it to application '{app_name}'"
                )
            if model_name in app.linked_models:
                raise DuplicateObjectError(
                    f"model '{model_name}' is already linked to application '{app_name}'"
                )
            _check_types_match(app, current)
            app.linked_models.append(model_name)

        return self._commit("add_model_links", change)

    def delete_model_links(self, body: Body) -> Any:
        app_name = _field(body, "delete_model_links", "app_name", str)
        model_names = _string_list(body, "delete_model_links", "model_names")

        def change(state: ClusterState) -> str:
            app = _existing_app(state, app_name)
            for model_name in model_names:
                if model_name not in app.linked_models:
                    raise UnknownObjectError(
                        f"model '{model_name}' is not linked to application '{app_name}' (linked: "
                        f"{app.linked_models or 'none'})"
                    )
            app.linked_models = [m for m in app.linked_models if m not in model_names]
            return f"Successfully unlinked {', '.join(model_names)} from application '{app_name}'"

        return self._commit("delete_model_links", change)

    # ----------------------------------------------------------------------------------------------
    # Models

    def add_model(self, body: Body) -> Any:
        name = check_name("model name", _field(body, "add_model", "model_name", str))
        version = check_name(
            "model version", _field(body, "add_model", "model_version", (str, int))
        )
        input_type = canonical_input_type(_field(body, "add_model", "input_type", str))
        labels = check_labels(body.get("labels"))
        batch_size, max_batch_size, batch_wait_timeout_micros = check_batching(
            body.get("batch_size", -1),
            body.get("max_batch_size"),
            body.get("batch_wait_timeout_micros", 0),
        )
        num_replicas = check_num_replicas(body.get("num_replicas", 0))
        image = _optional_string(body, "add_model", "container_name", NO_CONTAINER)
        model_data_path = _optional_string(body, "add_model", "model_data_path", "")
        make_current = body.get("make_current", True)
        if not isinstance(make_current, bool):
            raise ConfigurationError(
                f"add_model: 'make_current' must be true or false, got {make_current!r}"
            )
        new_version = ModelVersion(
            name,
            version,
            input_type,
            batch_size,
            labels,
            image,
            model_data_path,
            max_batch_size,
            batch_wait_timeout_micros,
            num_replicas,
        )

        def change(state: ClusterState) -> str:
            model = state.models.get(name)
            if model is not None and version in model.versions:
                raise DuplicateObjectError(
                    f"model '{name}' version '{version}' already exists; deploy under a new version, "
                    f"or stop this one first with stop_versioned_models({{'{name}': ['{version}']}})"
                )
            for app in state.apps_linked_to(name):
                _check_types_match(app, new_version)
            if model is None:
                state.models[name] = Model(name, version, {version: new_version})
            else:
                model.versions[version] = new_version
                if make_current:
                    model.current_version = version
            current = state.models[name].current_version
            return (
                f"Successfully added model '{name}' version '{version}' "
                f"(current version: '{current}')"
            )

        return self._commit("add_model", change)

    def set_model_version(self, body: Body) -> Any:
        name = _field(body, "set_model_version", "model_name", str)
        version = _version_field(body, "set_model_version")

        def change(state: ClusterState) -> str:
            model = _existing_model(state, name)
            target = model.versions.get(version)
            if target is None:
                raise UnknownObjectError(
                    f"model '{name}' has no version '{version}' (registered: "
                    f"{', '.join(model.versions)}); deploy it first"
                )
            for app in state.apps_linked_to(name):
                _check_types_match(app, target)
            model.current_version = version
            return f"Successfully set the current version of model '{name}' to '{version}'"

        return self._commit("set_model_version", change)

    def delete_versioned_model(self, body: Body) -> Any:
        name = _field(body, "delete_versioned_model", "model_name", str)
        version = _version_field(body, "delete_versioned_model")

        def change(state: ClusterState) -> str:
            model = _existing_model(state, name)
            if version not in model.versions:
                raise UnknownObjectError(f"model '{name}' has no version '{version}' to delete")
            if version == model.current_version and len(model.versions) > 1:
                raise ConfigurationError(
                    f"version '{version}' is the current version of model '{name}'; make another "
                    "version current with set_model_version first, or stop every version with "
                    "stop_models"
                )
            del model.versions[version]
            if not model.versions:
                del state.models[name]
            return f"Successfully deleted model '{name}' version '{version}'"

        return self._commit("delete_versioned_model", change)

    def set_model_batching(self, body: Body) -> Any:
        """Change a version's batching settings; fields left out keep their value, and a null
        `max_batch_size` removes the cap. The version defaults to the model's current one."""
        name = _field(body, "set_model_batching", "model_name", str)
        requested_version = body.get("model_version")
        changes = {
            key: body[key]
            for key in ("batch_size", "max_batch_size", "batch_wait_timeout_micros")
            if key in body
        }
        if not changes:
            raise ConfigurationError(
                "set_model_batching needs at least one of 'batch_size', 'max_batch_size', "
                "'batch_wait_timeout_micros'"
            )

        def change(state: ClusterState) -> str:
            target = _existing_version(state, name, requested_version, "set_model_batching")
            settings = {**target.batching(), **changes}
            (
                target.batch_size,
                target.max_batch_size,
                target.batch_wait_timeout_micros,
            ) = check_batching(
                settings["batch_size"],
                settings["max_batch_size"],
                settings["batch_wait_timeout_micros"],
            )
            return (
                f"Successfully set the batching of model '{name}' version '{target.version}' to "
                f"batch_size={target.batch_size} max_batch_size={target.max_batch_size} "
                f"batch_wait_timeout_micros={target.batch_wait_timeout_micros}"
            )

        return self._commit("set_model_batching", change)

    def set_model_replicas(self, body: Body) -> Any:
        """Record how many replicas the cluster runs for a version (the container manager starts and
        stops them; this keeps the number, so a restarted cluster can start them again)."""
        name = _field(body, "set_model_replicas", "model_name", str)
        requested_version = body.get("model_version")
        num_replicas = check_num_replicas(body.get("num_replicas"))

        def change(state: ClusterState) -> str:
            target = _existing_version(state, name, requested_version, "set_model_replicas")
            target.num_replicas = num_replicas
            return (
                f"Successfully recorded {num_replicas} replicas for model '{name}' version "
                f"'{target.version}'"
            )

        return self._commit("set_model_replicas", change)

    # ----------------------------------------------------------------------------------------------
    # Reads

    def get_all_applications(self, body: Body) -> Any:
        state = self.state
        if _verbose(body, "get_all_applications"):
            return [_app_info(app) for app in state.applications.values()]
        return list(state.applications)

    def get_application(self, body: Body) -> Any:
        name = _field(body, "get_application", "name", str)
        app = self.state.applications.get(name)
        return {} if app is None else _app_info(app)

    def get_linked_models(self, body: Body) -> Any:
        app_name = _field(body, "get_linked_models", "app_name", str)
        return list(_existing_app(self.state, app_name).linked_models)

    def get_all_models(self, body: Body) -> Any:
        state = self.state
        versions = [
            (model, version)
            for model in state.models.values()
            for version in model.versions.values()
        ]
        if _verbose(body, "get_all_models"):
            return [_model_info(model, version) for model, version in versions]
        return [f"{version.name}:{version.version}" for _, version in versions]

    def get_model(self, body: Body) -> Any:
        name = _field(body, "get_model", "model_name", str)
        version = _version_field(body, "get_model")
        model = self.state.models.get(name)
        if model is None or version not in model.versions:
            return {}
        return _model_info(model, model.versions[version])

    def get_all_containers(self, body: Body) -> Any:
        replicas = [_replica_info(replica) for replica in self._engine.replicas()]
        if _verbose(body, "get_all_containers"):
            return replicas
        return [f"{r['model_id']}:{r['model_replica_id']}" for r in replicas]

    def get_container(self, body: Body) -> Any:
        name = _field(body, "get_container", "model_name", str)
        version = _version_field(body, "get_container")
        replica_id = _field(body, "get_container", "replica_id", int)
        for replica in self.get_all_containers({"verbose": True}):
            if (replica["model_name"], replica["model_version"], replica["model_replica_id"]) == (
                name,
                version,
                replica_id,
            ):
                return replica
        return {}

    def get_state(self, body: Body) -> Any:
        app_name = _field(body, "get_state", "app_name", str)
        uid = body.get("uid", 0)
        app = _existing_app(self.state, app_name)
        # The only selection policy so far keeps no per-user state: its state is the default output.
        return {"app_name": app_name, "uid": uid, "state": {"y_hat": app.default_output}}

    def get_config(self, body: Body) -> Any:
        """The stored configuration as the store holds it (for operators and debugging)."""
        return self.state.to_dict()

    def get_batching_state(self, body: Body) -> Any:
        """A model version's batching: the configured settings, and what the engine reports about
        it (its batching state, or null where the engine does not report one)."""
        name = _field(body, "get_batching_state", "model_name", str)
        target = _existing_version(
            self.state, name, body.get("model_version"), "get_batching_state"
        )
        engine_state = None
        report = getattr(self._engine, "batching_state", None)
        if report is not None:
            engine_state = _entries_for(json.loads(report()), name, target.version)
        return {
            "model_name": name,
            "model_version": target.version,
            "configured": target.batching(),
            "engine": engine_state,
        }

    # ----------------------------------------------------------------------------------------------
    # Commit: validate -> engine -> store

    def commit(self, operation: str, change: Callable[[ClusterState], str]) -> dict[str, Any]:
        """Apply `change` to a copy of the served state, push it to the engine and store it (for
        operations defined outside this class, such as the selection layer's)."""
        return self._commit(operation, change)

    def _commit(self, operation: str, change: Callable[[ClusterState], str]) -> dict[str, Any]:
        with self._lock:
            for attempt in range(1, _MAX_COMMIT_ATTEMPTS + 1):
                current = self._state
                proposed = current.clone()
                message = change(proposed)
                # The engine validates too; a snapshot it refuses is never stored.
                self._push(proposed)
                try:
                    saved = self._store.save(proposed, expected_revision=current.revision)
                except StaleStateError:
                    logger.warning(
                        "event=state_stale operation=%s attempt=%d store=%s",
                        operation,
                        attempt,
                        self._store.description,
                    )
                    self._state = self._store.load()
                    self._push(self._state)
                    continue
                except StateStoreError:
                    self._push(current)
                    raise
                self._state = saved
                logger.info(
                    "event=config_changed operation=%s revision=%d message=%r",
                    operation,
                    saved.revision,
                    message,
                )
                return {"message": message, "revision": saved.revision}
        raise StateStoreError(
            f"{operation}: the state in {self._store.description} kept changing underneath; retry"
        )

    def _push(self, state: ClusterState) -> None:
        try:
            self._engine.apply_config(engine_config_json(state))
        except ValueError as error:
            raise ConfigurationError(f"the engine refused the configuration: {error}") from error


# --------------------------------------------------------------------------------------------------
# Body parsing and shared checks


def _field(body: Body, operation: str, key: str, expected: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, expected):
        names = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise ConfigurationError(f"{operation} needs '{key}' ({names}), got {value!r}")
    return value


def _verbose(body: Body, operation: str) -> bool:
    """`verbose` is a boolean (absent: false); anything else is refused rather than taken for its
    truth value (schemathesis found {"verbose": {}} accepted)."""
    value = body.get("verbose", False)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{operation}: 'verbose' must be true or false, got {value!r}")
    return value


def _optional_string(body: Body, operation: str, key: str, default: str) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigurationError(f"{operation}: '{key}' must be a string, got {value!r}")
    return value


def _version_field(body: Body, operation: str) -> str:
    return str(_field(body, operation, "model_version", (str, int)))


def _string_list(body: Body, operation: str, key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{operation} needs '{key}' (a list of strings), got {value!r}")
    return value


def _existing_app(state: ClusterState, name: str) -> Application:
    app = state.applications.get(name)
    if app is None:
        raise UnknownObjectError(
            f"application '{name}' does not exist; register it with register_application first"
        )
    return app


def _existing_model(state: ClusterState, name: str) -> Model:
    model = state.models.get(name)
    if model is None:
        raise UnknownObjectError(
            f"model '{name}' does not exist; deploy it with deploy_model (or register_model) first"
        )
    return model


def _existing_version(
    state: ClusterState, name: str, version: object, operation: str
) -> ModelVersion:
    """The named version of an existing model; its current version when `version` is None."""
    model = _existing_model(state, name)
    if version is None:
        version = model.current_version
    elif isinstance(version, bool) or not isinstance(version, (str, int)):
        raise ConfigurationError(f"{operation}: 'model_version' must be a string, got {version!r}")
    target = model.versions.get(str(version))
    if target is None:
        raise UnknownObjectError(
            f"model '{name}' has no version '{version}' (registered: "
            f"{', '.join(model.versions)}); deploy it first"
        )
    return target


def _entries_for(report: Any, name: str, version: str) -> Any:
    """The part of the engine's batching report about one model version.

    The report may be a list of entries, an object holding such a list (under "models"), or an object
    keyed by "name:version"; entries name their model as model_name/name and model_version/version.
    """
    if isinstance(report, dict) and isinstance(report.get("models"), list):
        report = report["models"]
    if isinstance(report, list):
        matching = [
            entry
            for entry in report
            if isinstance(entry, dict)
            and str(entry.get("model_name", entry.get("name"))) == name
            and str(entry.get("model_version", entry.get("version"))) == version
        ]
        return matching[0] if len(matching) == 1 else matching
    if isinstance(report, dict):
        return report.get(f"{name}:{version}")
    return None


def _check_types_match(app: Application, version: ModelVersion) -> None:
    if app.input_type != version.input_type:
        raise InputTypeMismatchError(
            f"model '{version.name}' version '{version.version}' takes {version.input_type} but "
            f"application '{app.name}' takes {app.input_type}; use a model version with input_type "
            f"'{app.input_type}' or an application of type '{version.input_type}'"
        )


def _app_info(app: Application) -> dict[str, Any]:
    return {
        "name": app.name,
        "input_type": app.input_type,
        "default_output": app.default_output,
        "latency_slo_micros": app.slo_micros,
        "linked_models": list(app.linked_models),
        "overload": app.overload,
    }


def _model_info(model: Model, version: ModelVersion) -> dict[str, Any]:
    return {
        "model_name": version.name,
        "model_version": version.version,
        "input_type": version.input_type,
        "labels": list(version.labels),
        "container_name": version.image,
        "model_data_path": version.model_data_path,
        "batch_size": version.batch_size,
        "max_batch_size": version.max_batch_size,
        "batch_wait_timeout_micros": version.batch_wait_timeout_micros,
        "num_replicas": version.num_replicas,
        "is_current_version": version.version == model.current_version,
    }


def _replica_info(replica: dict[str, Any]) -> dict[str, Any]:
    name = str(replica["model_name"])
    version = str(replica["model_version"])
    return {
        "model_id": f"{name}:{version}",
        "model_name": name,
        "model_version": version,
        "model_replica_id": int(replica["replica_id"]),
        "input_type": replica.get("input_type", ""),
        "inflight_batches": replica.get("inflight_batches", 0),
        "transport": replica.get("transport", "zmq"),
    }
