"""The model container SDK: serve a Python model to a Clipper frontend.

Users import from here only: subclass `Model`, implement `predict_batch` (returning `Prediction`s to
report confidences), and call `run` (or start the `clipper-model` command). `ModelServer` and
`ContainerOptions` embed a replica in a program of your own; `ReplicaCredentials` holds the keys
it authenticates to the frontend with.
Everything else in this package is internal and may change.
"""

from clipper.container.credentials import ReplicaCredentials
from clipper.container.model import Model, Prediction
from clipper.container.server import ContainerOptions, ModelServer, run

__all__ = ["ContainerOptions", "Model", "ModelServer", "Prediction", "ReplicaCredentials", "run"]
