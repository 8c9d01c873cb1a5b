"""The cluster's configuration as data: applications, models, their versions and links.

Owns the in-memory shape, its JSON form (what every state store persists) and the naming and input-type
rules shared by the client and the server. It does not validate relations between objects (unknown
models, type mismatches): that is `clipper.management.service`'s job, done in one place.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from clipper.exceptions import ConfigurationError
from clipper_native import defaults

# Bumped when the persisted JSON layout changes incompatibly; loaders refuse newer formats.
STATE_FORMAT_VERSION = 1

INPUT_TYPES = defaults.INPUT_TYPE_NAMES

# Clipper's accepted spellings mapped to the canonical names of the contract (the engine's own table).
_INPUT_TYPE_ALIASES = defaults.INPUT_TYPE_ALIASES

# App names become URL paths (`/<app>/predict`) and model names become file and process names, so both
# are restricted to characters that need no escaping anywhere. `:` and `,` stay out because Clipper's
# identifiers ("name:version", "name,version,replica") are built with them.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LABEL_PATTERN = re.compile(r"^[^,:]{1,128}$")

MAX_SLO_MICROS = 2**31 - 1

APP_OVERLOAD = defaults.APP_OVERLOAD


def canonical_input_type(value: object) -> str:
    """Return the canonical input type name for `value` or raise ConfigurationError."""
    if isinstance(value, str):
        canonical = _INPUT_TYPE_ALIASES.get(value.strip().lower())
        if canonical is not None:
            return canonical
    raise ConfigurationError(
        f"input_type {value!r} is not supported: use one of {', '.join(INPUT_TYPES)}"
    )


def check_name(kind: str, value: object) -> str:
    """Validate an app name, model name or version; returns it as a string."""
    if isinstance(value, int) and not isinstance(value, bool) and kind.endswith("version"):
        value = str(value)  # Clipper accepts integer versions and stores them as strings
    if not isinstance(value, str) or not _NAME_PATTERN.match(value):
        raise ConfigurationError(
            f"{kind} {value!r} is not valid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_labels(labels: object) -> list[str]:
    if labels is None:
        return []
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        raise ConfigurationError(f"labels must be a list of strings, got {labels!r}")
    for label in labels:
        if not _LABEL_PATTERN.match(label):
            raise ConfigurationError(
                f"label {label!r} is not valid: labels are 1-128 characters without ',' or ':'"
            )
    return list(labels)


def check_slo_micros(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SLO_MICROS:
        raise ConfigurationError(
            f"slo_micros {value!r} is not valid: give a whole number of microseconds between 1 and "
            f"{MAX_SLO_MICROS} (100000 = 100 ms is a good start)"
        )
    return value


def check_overload(value: object) -> str:
    """How an app answers a query refused under overload: "reject" (429/503) or "default"."""
    if value not in defaults.OVERLOAD_ANSWERS:
        raise ConfigurationError(
            f"overload {value!r} is not valid: use 'reject' (refused queries get 429 or 503 with "
            "Retry-After) or 'default' (they get the application's default output)"
        )
    return str(value)


def _stored_overload(data: dict[str, Any]) -> str:
    value = data.get("overload", APP_OVERLOAD)
    if value not in defaults.OVERLOAD_ANSWERS:  # a ValueError: the loader reports the file
        raise ValueError(
            f"application {data.get('name')!r}: overload {value!r} is not 'reject' or 'default'"
        )
    return str(value)


def check_batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value > 0):
        raise ConfigurationError(
            f"batch_size {value!r} is not valid: use -1 for adaptive batching or a positive maximum"
        )
    return value


def check_num_replicas(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"num_replicas must be a whole number >= 0, got {value!r}")
    return value


def check_max_batch_size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(
            f"max_batch_size {value!r} is not valid: give a positive number of inputs, or leave it "
            "unset (None) for no cap beyond the engine's own"
        )
    return value


def check_batch_wait_timeout_micros(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SLO_MICROS:
        raise ConfigurationError(
            f"batch_wait_timeout_micros {value!r} is not valid: give a whole number of microseconds "
            f"between 0 (send batches at once, the default) and {MAX_SLO_MICROS}"
        )
    return value


def check_batching(
    batch_size: object, max_batch_size: object, batch_wait_timeout_micros: object
) -> tuple[int, int | None, int]:
    """Validate one model version's batching settings together; returns them typed."""
    checked = (
        check_batch_size(batch_size),
        check_max_batch_size(max_batch_size),
        check_batch_wait_timeout_micros(batch_wait_timeout_micros),
    )
    fixed, cap, _ = checked
    if cap is not None and fixed > cap:
        raise ConfigurationError(
            f"batch_size {fixed} is larger than max_batch_size {cap}: raise max_batch_size, lower "
            "batch_size, or use batch_size=-1 (adaptive, capped at max_batch_size)"
        )
    return checked


@dataclass
class Application:
    name: str
    input_type: str
    default_output: str
    slo_micros: int
    linked_models: list[str] = field(default_factory=list)
    # The selection policy (clipper.selection) and the parameters set away from their defaults.
    selection_policy: str = "single"
    selection_params: dict[str, Any] = field(default_factory=dict)
    # How a query refused at arrival under overload is answered: "reject" (429/503) or "default".
    overload: str = APP_OVERLOAD

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "input_type": self.input_type,
            "default_output": self.default_output,
            "slo_micros": self.slo_micros,
            "linked_models": list(self.linked_models),
        }
        if self.selection_policy != "single" or self.selection_params:  # absent = Clipper's default
            data["selection_policy"] = self.selection_policy
            data["selection_params"] = copy.deepcopy(self.selection_params)
        if self.overload != APP_OVERLOAD:  # absent = the default
            data["overload"] = self.overload
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Application:
        return cls(
            name=data["name"],
            input_type=data["input_type"],
            default_output=data["default_output"],
            slo_micros=int(data["slo_micros"]),
            linked_models=list(data.get("linked_models", [])),
            selection_policy=data.get("selection_policy", "single"),
            selection_params=dict(data.get("selection_params", {})),
            overload=_stored_overload(data),
        )


@dataclass
class ModelVersion:
    name: str
    version: str
    input_type: str
    # -1 = adaptive batch sizes (AIMD), k > 0 = batches of at most k inputs.
    batch_size: int = -1
    labels: list[str] = field(default_factory=list)
    # What runs the replicas: an image name (Docker, Kubernetes), a saved model directory (local), or
    # "NO_CONTAINER" for a model whose replicas are started outside Clipper.
    image: str = "NO_CONTAINER"
    model_data_path: str = ""
    # Hard cap on a batch's inputs whatever the batching policy learns; None = the engine's own cap.
    max_batch_size: int | None = None
    # Delayed batching: how long a replica's next batch may wait for more inputs; 0 = send at once.
    batch_wait_timeout_micros: int = 0
    # Replicas the cluster runs for this version (deploy_model, set_num_replicas); a cluster started
    # again starts the missing ones. 0 for a version whose replicas run outside Clipper.
    num_replicas: int = 0

    def batching(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_micros": self.batch_wait_timeout_micros,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "input_type": self.input_type,
            "batch_size": self.batch_size,
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_micros": self.batch_wait_timeout_micros,
            "num_replicas": self.num_replicas,
            "labels": list(self.labels),
            "image": self.image,
            "model_data_path": self.model_data_path,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        return cls(
            name=data["name"],
            version=data["version"],
            input_type=data["input_type"],
            batch_size=int(data.get("batch_size", -1)),
            labels=list(data.get("labels", [])),
            image=data.get("image", "NO_CONTAINER"),
            model_data_path=data.get("model_data_path", ""),
            max_batch_size=(
                None if data.get("max_batch_size") is None else int(data["max_batch_size"])
            ),
            batch_wait_timeout_micros=int(data.get("batch_wait_timeout_micros", 0)),
            num_replicas=int(data.get("num_replicas", 0)),
        )


@dataclass
class Model:
    """All registered versions of one model; `current_version` is where queries go by default."""

    name: str
    current_version: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "current_version": self.current_version,
            "versions": [self.versions[v].to_dict() for v in self.versions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        versions = [ModelVersion.from_dict(v) for v in _list_field(data, "versions")]
        return cls(
            name=data["name"],
            current_version=data["current_version"],
            versions=_unique(
                f"version of model {data['name']!r}", [(v.version, v) for v in versions]
            ),
        )


@dataclass
class ClusterState:
    """One consistent configuration. `revision` grows by one with every saved change."""

    revision: int = 0
    applications: dict[str, Application] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)

    def clone(self) -> ClusterState:
        return copy.deepcopy(self)

    def current_version(self, model_name: str) -> ModelVersion | None:
        model = self.models.get(model_name)
        return None if model is None else model.versions.get(model.current_version)

    def apps_linked_to(self, model_name: str) -> list[Application]:
        return [app for app in self.applications.values() if model_name in app.linked_models]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "revision": self.revision,
            "applications": [app.to_dict() for app in self.applications.values()],
            "models": [model.to_dict() for model in self.models.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        """The state stored as `data`; raises StateFormatError for anything that is not one."""
        try:
            return cls._from_dict(data)
        except StateFormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise StateFormatError(detail or type(error).__name__) from error

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> ClusterState:
        if not isinstance(data, dict):
            raise StateFormatError(f"the state is a JSON {type(data).__name__}, not an object")
        format_version = data.get("format_version", STATE_FORMAT_VERSION)
        if not isinstance(format_version, int) or isinstance(format_version, bool):
            raise StateFormatError(f"format_version {format_version!r} is not a number")
        if format_version > STATE_FORMAT_VERSION:
            raise StateFormatError(
                f"state format {format_version} is newer than this version of clipper understands "
                f"({STATE_FORMAT_VERSION}); upgrade clipper"
            )
        apps = [Application.from_dict(a) for a in _list_field(data, "applications")]
        models = [Model.from_dict(m) for m in _list_field(data, "models")]
        return cls(
            revision=int(data.get("revision", 0)),
            applications=_unique("application", [(app.name, app) for app in apps]),
            models=_unique("model", [(model.name, model) for model in models]),
        )


class StateFormatError(ValueError):
    """A stored state that is not a valid ClusterState (wrong shape, duplicate entries)."""


def _list_field(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise StateFormatError(f"{name} is a JSON {type(value).__name__}, not a list")
    return value


def _unique(kind: str, entries: list[tuple[str, Any]]) -> dict[str, Any]:
    """{name: entry}, refusing a name given twice: keeping either copy would silently lose the other."""
    unique: dict[str, Any] = {}
    for name, entry in entries:
        if name in unique:
            raise StateFormatError(f"{kind} {name!r} appears more than once")
        unique[name] = entry
    return unique
