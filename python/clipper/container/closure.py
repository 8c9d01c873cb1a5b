"""Python closures as models: saving one for a replica to load, and the Model adapter that serves it.

Owns the on-disk form of a deployed closure (a cloudpickle file named func.pkl, with any model a
framework deployer saved beside it: ModelDirectoryClosure). The deployers call
save_closure in the admin process; the replica process (closure_runner.py) calls load_closure once at
start-up, and ClosureModel.predict_batch then runs on the serving loop's main thread.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from clipper.container.model import Model

CLOSURE_FILE_NAME = "func.pkl"


def save_closure(func: Callable[[Any], Sequence[Any]], directory: str | os.PathLike[str]) -> Path:
    """Pickles `func` (with cloudpickle, so lambdas, closures and functions defined in `__main__`
    travel by value) into `directory`/func.pkl, creating the directory; returns the file's path."""
    if not callable(func):
        raise TypeError(f"save_closure needs a callable, got {type(func).__name__}")
    path = Path(directory) / CLOSURE_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        cloudpickle.dump(func, file)
    return path


def load_closure(path: str | os.PathLike[str]) -> Callable[[Any], Sequence[Any]]:
    """Loads the function save_closure wrote; `path` is the func.pkl file or its directory.

    When the function is a ModelDirectoryClosure, its model is loaded from the same directory before
    it is returned. Raises FileNotFoundError, or TypeError when the file holds something that is not
    callable.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CLOSURE_FILE_NAME
    with path.open("rb") as file:
        func: Callable[[Any], Sequence[Any]] = cloudpickle.load(file)
    if not callable(func):
        raise TypeError(f"{path} holds a {type(func).__name__}, not a function")
    if isinstance(func, ModelDirectoryClosure):
        func.load_model_directory(path.parent)
    return func


class ModelDirectoryClosure(ABC):
    """A function whose model is saved beside func.pkl in its framework's own format (what the
    framework deployers write) rather than pickled with it. load_closure calls load_model_directory
    once, in the replica, before the first batch; the pickle carries only how to load and call it."""

    @abstractmethod
    def load_model_directory(self, directory: Path) -> None:
        """Loads the model saved in `directory` (the directory of func.pkl)."""

    @abstractmethod
    def __call__(self, inputs: Any) -> Sequence[Any]:
        """Predicts one output per input with the loaded model."""


class ClosureModel(Model):
    """Serves a function `func(inputs) -> list` exactly as a Model's predict_batch: what it returns,
    `Prediction`s with their confidences included, passes through unchanged."""

    def __init__(self, func: Callable[[Any], Sequence[Any]]) -> None:
        self.func = func
        # The function itself answers batches: no Python frame of ours around each call.
        self.predict_batch = func  # type: ignore[method-assign]

    def predict_batch(self, inputs: Any) -> Sequence[Any]:
        return self.func(inputs)
