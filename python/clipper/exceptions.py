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


class ManagementAPIError(ClipperException):
    """The management REST API answered an error; `cause` carries the server's explanation."""

    def __init__(self, operation: str, status_code: int, error: str, cause: str) -> None:
        self.operation = operation
        self.status_code = status_code
        self.error = error
        self.cause = cause
        super().__init__(f"{operation} failed ({status_code} {error}): {cause}")


class ClusterStartError(ClipperException):
    """The frontend process of a cluster did not start or did not become healthy in time."""


class DeploymentError(ClipperException):
    """Model replicas did not start, or did not connect to the frontend in time."""


class StateStoreError(ClipperException):
    """The state store cannot be read or written (corrupt file, unreachable server, locked)."""


class StaleStateError(StateStoreError):
    """A write was based on an older revision than the stored one (another writer got there first);
    reload and retry."""
