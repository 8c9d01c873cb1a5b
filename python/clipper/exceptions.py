"""The exceptions the public `clipper` API raises, one place for all of them.

Every message names the object involved and says what to do next. Nothing here imports the rest of the
package, so any module (including the frontend process) can raise these without import cycles.
"""

from __future__ import annotations


class ClipperException(Exception):
    """Base class of every error raised by the `clipper` admin API, managers and deployers."""


class UnconnectedException(ClipperException):
    """A method needs a running cluster but the connection was never started or connected."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "This ClipperConnection is not connected to a cluster: call start_clipper() to start "
            "one or connect() to attach to a running one first."
        )


class ConfigurationError(ClipperException):
    """A requested change is invalid for the cluster's configuration (unknown app, duplicate model,
    input type mismatch, ...). The management API answers these with 400."""


class UnknownObjectError(ConfigurationError):
    """The change names an application, model or version that does not exist."""


class DuplicateObjectError(ConfigurationError):
    """The change would create an application, model version or link that already exists."""


class InputTypeMismatchError(ConfigurationError):
    """An application and a model (version) it is, or would be, linked to take different input types."""


class ContainerlessModelError(ConfigurationError):
    """The model version was registered without a container (`register_model` with no image), so
    Clipper cannot start, stop or scale its replicas."""


class SelectionPolicyError(ConfigurationError):
    """An unknown selection policy, bad policy parameters, or a link the app's policy cannot serve."""


# The ConfigurationError subclasses the management API names in its error bodies ("type"), so a remote
# caller raises the same class the service raised.
CONFIGURATION_ERROR_TYPES: dict[str, type[ConfigurationError]] = {
    cls.__name__: cls
    for cls in (
        ConfigurationError,
        UnknownObjectError,
        DuplicateObjectError,
        InputTypeMismatchError,
        ContainerlessModelError,
        SelectionPolicyError,
    )
}


class ManagementAPIError(ClipperException):
    """The management REST API answered an error; `cause` carries the server's explanation.

    Use `management_api_error` to build one: when the server names the ConfigurationError subclass it
    raised, the instance is also of that class (`except UnknownObjectError` works across the wire)."""

    def __init__(self, operation: str, status_code: int, error: str, cause: str) -> None:
        self.operation = operation
        self.status_code = status_code
        self.error = error
        self.cause = cause
        super().__init__(f"{operation} failed ({status_code} {error}): {cause}")


_REMOTE_ERROR_CLASSES: dict[str, type[ManagementAPIError]] = {}


def management_api_error(
    operation: str, status_code: int, error: str, cause: str, error_type: str | None = None
) -> ManagementAPIError:
    """A ManagementAPIError that is also the ConfigurationError subclass `error_type` names (if any)."""
    configuration_class = CONFIGURATION_ERROR_TYPES.get(error_type or "")
    if configuration_class is None:
        return ManagementAPIError(operation, status_code, error, cause)
    remote_class = _REMOTE_ERROR_CLASSES.get(configuration_class.__name__)
    if remote_class is None:
        remote_class = type(
            f"Remote{configuration_class.__name__}",
            (ManagementAPIError, configuration_class),
            {"__module__": __name__},
        )
        _REMOTE_ERROR_CLASSES[configuration_class.__name__] = remote_class
    return remote_class(operation, status_code, error, cause)


class ClusterStartError(ClipperException):
    """The frontend process of a cluster did not start or did not become healthy in time."""


class DeploymentError(ClipperException):
    """Model replicas did not start, or did not connect to the frontend in time."""


class StateStoreError(ClipperException):
    """The state store cannot be read or written (corrupt file, unreachable server, locked)."""


class StaleStateError(StateStoreError):
    """A write was based on an older revision than the stored one (another writer got there first);
    reload and retry."""
