"""Clipper: low-latency prediction serving. The public surface users import from.

`ClipperConnection` administers a cluster through a container manager (`LocalContainerManager` runs
everything as local processes, `DockerContainerManager` runs each in a container,
`KubernetesContainerManager` runs them on a Kubernetes cluster); models are deployed
with `clipper.deployers`, and model code runs in replicas built with `clipper.container`. Everything else
in the package is internal. Names load on first use (PEP 562), so `import clipper.container` in a model
image loads no control-plane module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first read.
_EXPORTS = {
    "ClipperConnection": "clipper.admin.connection",
    "ClipperException": "clipper.exceptions",
    "ConfigurationError": "clipper.exceptions",
    "ContainerlessModelError": "clipper.exceptions",
    "DeploymentError": "clipper.exceptions",
    "DuplicateObjectError": "clipper.exceptions",
    "InputTypeMismatchError": "clipper.exceptions",
    "ManagementAPIError": "clipper.exceptions",
    "UnconnectedException": "clipper.exceptions",
    "UnknownObjectError": "clipper.exceptions",
    "LocalContainerManager": "clipper.managers.local",
    "DockerContainerManager": "clipper.managers.docker",
    "KubernetesContainerManager": "clipper.managers.kubernetes",
}

__all__ = [
    "ClipperConnection",
    "ClipperException",
    "ConfigurationError",
    "ContainerlessModelError",
    "DeploymentError",
    "DockerContainerManager",
    "DuplicateObjectError",
    "InputTypeMismatchError",
    "KubernetesContainerManager",
    "LocalContainerManager",
    "ManagementAPIError",
    "UnconnectedException",
    "UnknownObjectError",
]

if TYPE_CHECKING:
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
    from clipper.managers.docker import DockerContainerManager
    from clipper.managers.kubernetes import KubernetesContainerManager
    from clipper.managers.local import LocalContainerManager


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'clipper' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("clipper"):
            raise
        raise ImportError(
            f"clipper.{name} is part of the control plane ({module_name}), which is not installed "
            "here: this environment has only the model container SDK (clipper-container-sdk). "
            "Install clipper-serving to administer clusters."
        ) from error
    value = getattr(module, name)
    globals()[name] = value  # later reads skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
