"""`clipper deploy`: serve a model version from a Python file (a function or a
`clipper.container.Model`) or from a directory a deployer saved, and wait until its replicas serve."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from clipper._cli.common import connect_cluster, say_progress
from clipper.exceptions import ClipperException


def deploy_command(args: argparse.Namespace) -> int:
    connection = connect_cluster(args)
    options = {
        "labels": args.label,
        "num_replicas": args.replicas,
        "batch_size": args.batch_size,
        "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_micros": args.batch_wait_timeout_micros,
        "pkgs_to_install": args.pkg or None,
    }
    source = Path(args.source.rsplit(":", 1)[0] if _names_attribute(args.source) else args.source)
    if source.is_dir():
        say_progress(
            args, f"deploying the saved model in {source} as {args.name}:{args.version} ..."
        )
        connection.build_and_deploy_model(
            args.name, args.version, args.input_type, str(source), **options
        )
    else:
        from clipper.container.closure import save_closure

        function, description = load_predict_function(args.source)
        say_progress(args, f"deploying {description} as {args.name}:{args.version} ...")
        with tempfile.TemporaryDirectory(prefix=f"clipper-{args.name}-") as model_dir:
            save_closure(function, model_dir)
            connection.build_and_deploy_model(
                args.name, args.version, args.input_type, model_dir, **options
            )
    print(
        f"deployed model '{args.name}' version '{args.version}' "
        f"({args.replicas} replica{'s' if args.replicas != 1 else ''}); current version: "
        f"'{connection.get_current_model_version(args.name)}'"
    )
    if args.link:
        connection.link_model_to_app(args.link, args.name)
        print(f"linked model '{args.name}' to application '{args.link}'")
    return 0


def _names_attribute(source: str) -> bool:
    head, separator, tail = source.rpartition(":")
    return bool(separator) and head.endswith(".py") and tail.isidentifier()


def load_predict_function(source: str) -> tuple[Callable[[Any], Any], str]:
    """The function to serve from `FILE.py[:ATTRIBUTE]`: the attribute (or the file's only candidate)
    when it is a function, `predict_batch` of a `clipper.container.Model` instance, or of an instance
    of a Model subclass (created with no arguments). The module is pickled by value, so replicas do
    not need the file. Returns (function, description); raises ClipperException."""
    import cloudpickle

    from clipper.container.model import Model

    path_text, attribute = source.rsplit(":", 1) if _names_attribute(source) else (source, None)
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise ClipperException(
            f"{source!r} is neither a Python file (FILE.py[:ATTRIBUTE]) nor a saved model directory"
        )
    module = _import_file(path)

    def is_candidate(value: Any) -> bool:
        if isinstance(value, Model):
            return True
        if isinstance(value, type):
            return issubclass(value, Model) and value is not Model and not inspect.isabstract(value)
        return inspect.isfunction(value) and value.__module__ == module.__name__

    if attribute is None:
        public = {name: v for name, v in vars(module).items() if not name.startswith("_")}
        # A model (class or instance) wins over functions, which may be its helpers.
        candidates = [
            name
            for name, value in public.items()
            if is_candidate(value) and not inspect.isfunction(value)
        ] or [name for name, value in public.items() if is_candidate(value)]
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise ClipperException(
                f"{path} must define exactly one function or clipper.container.Model to serve "
                f"(found: {found}); name it as {path}:ATTRIBUTE"
            )
        attribute = candidates[0]
    target = getattr(module, attribute, None)
    if target is None or not (is_candidate(target) or callable(target)):
        raise ClipperException(
            f"{path} has no function or clipper.container.Model named {attribute!r}"
        )
    cloudpickle.register_pickle_by_value(module)
    if isinstance(target, type):
        try:
            target = target()
        except TypeError as error:
            raise ClipperException(
                f"{path}:{attribute} cannot be created without arguments ({error}); define an "
                "instance in the file and deploy that instead"
            ) from error
    if isinstance(target, Model):
        return target.predict_batch, f"{path}:{attribute} (a {type(target).__name__} model)"
    return target, f"{path}:{attribute}"


def _import_file(path: Path) -> ModuleType:
    module_name = f"clipper_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ClipperException(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # cloudpickle pickles by value only registered modules
    sys.path.insert(0, str(path.parent.resolve()))  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ClipperException(f"importing {path} failed: {error!r}") from error
    return module
