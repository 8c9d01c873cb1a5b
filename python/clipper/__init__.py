"""Clipper: low-latency prediction serving. The public surface users import from.

`ClipperConnection` administers a cluster through a container manager (`LocalContainerManager` runs
everything as local processes); models are deployed with `clipper.deployers`, and model code runs in
replicas built with `clipper.container`. Everything else in the package is internal.
"""

from clipper.admin.connection import ClipperConnection
from clipper.exceptions import (
    ClipperException,
    ConfigurationError,
    ContainerlessModelError,
    DeploymentError,
    DuplicateObjectError,
    InputTypeMismatchError,
    ManagementAPIError,
    UnconnectedException,
    UnknownObjectError,
)
from clipper.managers.local import LocalContainerManager

__version__ = "0.1.0"

__all__ = [
    "ClipperConnection",
    "ClipperException",
    "ConfigurationError",
    "ContainerlessModelError",
    "DeploymentError",
    "DuplicateObjectError",
    "InputTypeMismatchError",
    "LocalContainerManager",
    "ManagementAPIError",
    "UnconnectedException",
    "UnknownObjectError",
]
