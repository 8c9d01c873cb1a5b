"""What the deployers share: their DeploymentOptions keywords (one signature, added by
`takes_deployment_options`), packaging a model saved in its framework's own format beside a func.pkl,
and the closure that serves it.

Owns the model directory's layout (the model's files, then func.pkl holding a FrameworkClosure: how to
load the model and the `func(model, inputs)` that predicts with it) and the hand-off to
`ClipperConnection.build_and_deploy_model`. Does not know any framework: each deployer module passes
its own save, load and default predict functions. Deploying runs in the user's thread; in the replica,
load_closure loads the model once at start-up and FrameworkClosure.__call__ runs on the serving thread.
"""

from __future__ import annotations

import functools
import inspect
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from clipper.container.closure import ModelDirectoryClosure, save_closure
from clipper.exceptions import ClipperException

if TYPE_CHECKING:
    from clipper.admin.connection import ClipperConnection

logger = logging.getLogger(__name__)

# Clipper's framework closure: `func(model, inputs)` returns one output per input.
ModelFunction = Callable[[Any, Any], Sequence[Any]]
# Reads the model back from the model directory (the replica's copy of it).
ModelLoader = Callable[[Path], Any]
# Writes the model into the (new, empty) model directory.
ModelSaver = Callable[[Path], None]


class DeployerArgumentError(ClipperException, ValueError):
    """A framework deployer was called without its model, or with a model or option it cannot serve."""


@dataclass(frozen=True)
class DeploymentOptions:
    """How a deployer builds and runs the model's replicas; the same for every framework deployer.

    Pass one as `options=` to any deploy_<kind>_model or create_endpoint, or pass the same names as
    keyword arguments (they fill a DeploymentOptions); not both.
    """

    num_replicas: int = 1
    batch_size: int = -1
    max_batch_size: int | None = None
    batch_wait_timeout_micros: int = 0
    pkgs_to_install: Sequence[str] | None = None
    base_image: str = "default"
    labels: Sequence[str] | None = None
    registry: str | None = None


def resolve_options(options: DeploymentOptions | None, **keywords: Any) -> DeploymentOptions:
    """The deployment options: `options` when given (the keyword arguments must then be left at their
    defaults), else a DeploymentOptions filled from the keyword arguments."""
    if options is None:
        return DeploymentOptions(**keywords)
    if not isinstance(options, DeploymentOptions):
        raise DeployerArgumentError(
            f"options must be a clipper.deployers.DeploymentOptions, got {type(options).__name__}"
        )
    defaults = DeploymentOptions()
    changed = sorted(key for key, value in keywords.items() if value != getattr(defaults, key))
    if changed:
        raise DeployerArgumentError(
            f"pass {', '.join(changed)} either in options=DeploymentOptions(...) or as keyword "
            "arguments, not both"
        )
    return options


# Where Clipper's deployers list the DeploymentOptions keywords: deploy_<kind>_model puts the image
# first, create_endpoint its labels; both end with the batching options added since.
DEPLOY_KEYWORDS = (
    "base_image",
    "labels",
    "registry",
    "num_replicas",
    "batch_size",
    "pkgs_to_install",
    "max_batch_size",
    "batch_wait_timeout_micros",
)
ENDPOINT_KEYWORDS = ("labels", "registry", "base_image", *DEPLOY_KEYWORDS[3:])

_OPTION_FIELDS = {option.name: option for option in fields(DeploymentOptions)}
_Deployer = TypeVar("_Deployer", bound=Callable[..., Any])


def takes_deployment_options(
    keywords: Sequence[str] = DEPLOY_KEYWORDS,
) -> Callable[[_Deployer], _Deployer]:
    """Gives a deployer the DeploymentOptions keywords without writing them out again.

    The deployer is written with its own parameters and a last keyword-only `options`; the decorated
    function takes its own parameters, then `keywords` in that order (Clipper's positions: a name of
    one of the deployer's own keyword parameters places that one among them), then `options=`. It
    resolves them (resolve_options) and calls the deployer with `options` always a DeploymentOptions.
    `inspect.signature` and help() show the whole signature.
    """

    def decorate(deployer: _Deployer) -> _Deployer:
        own = inspect.signature(deployer)
        if list(own.parameters)[-1:] != ["options"]:
            raise TypeError(f"{deployer.__name__} must end with an `options` parameter")
        placed = [own.parameters[name] for name in keywords if name in own.parameters]
        leading = [p for p in own.parameters.values() if p.name != "options" and p not in placed]
        shared = [name for name in keywords if name in _OPTION_FIELDS]
        trailing = [
            own.parameters[name]
            if name in own.parameters
            else inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=_OPTION_FIELDS[name].default,
                annotation=_OPTION_FIELDS[name].type,
            )
            for name in keywords
        ]
        options = own.parameters["options"].replace(
            kind=inspect.Parameter.KEYWORD_ONLY, default=None, annotation="DeploymentOptions | None"
        )
        signature = own.replace(parameters=[*leading, *trailing, options])

        @functools.wraps(deployer)
        def deploy(*args: Any, **kwargs: Any) -> Any:
            arguments = signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            values = dict(arguments.arguments)
            chosen = {name: values.pop(name) for name in shared}
            values["options"] = resolve_options(values["options"], **chosen)
            return deployer(**values)

        deploy.__signature__ = signature  # type: ignore[attr-defined]
        return cast(_Deployer, deploy)

    return decorate


def build_and_deploy(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    model_dir: str | Path,
    options: DeploymentOptions,
) -> None:
    """Hands a ready model directory to `ClipperConnection.build_and_deploy_model` with `options`."""
    clipper_conn.build_and_deploy_model(
        name,
        str(version),
        input_type,
        str(model_dir),
        base_image=options.base_image,
        labels=options.labels,
        container_registry=options.registry,
        num_replicas=options.num_replicas,
        batch_size=options.batch_size,
        pkgs_to_install=options.pkgs_to_install,
        max_batch_size=options.max_batch_size,
        batch_wait_timeout_micros=options.batch_wait_timeout_micros,
    )


class FrameworkClosure(ModelDirectoryClosure):
    """`func(model, inputs)` over a model that lives in the model directory, not in the pickle.

    Pickles as the framework's name, `load_model` and `func` only; the model is set by
    load_model_directory (called by load_closure in the replica) and never pickled.
    """

    def __init__(self, framework: str, load_model: ModelLoader, func: ModelFunction) -> None:
        if not callable(func):
            raise DeployerArgumentError(
                f"func must be a function func(model, inputs), got {type(func).__name__}"
            )
        self.framework = framework
        self.load_model = load_model
        self.func = func
        self.model: Any = None

    def load_model_directory(self, directory: Path) -> None:
        self.model = self.load_model(Path(directory))
        logger.info(
            "event=framework_model_loaded framework=%s directory=%s", self.framework, directory
        )

    def __call__(self, inputs: Any) -> Sequence[Any]:
        if self.model is None:
            raise RuntimeError(
                f"the {self.framework} model is not loaded; load this closure with "
                "clipper.container.closure.load_closure from its model directory"
            )
        return self.func(self.model, inputs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None  # the model travels in its own format, beside func.pkl
        return state


def require_model(model: Any, parameter: str, deployer: str) -> None:
    """Raises DeployerArgumentError when a deployer was called without its model (the model
    parameter has a default only so that `func`, which comes before it, can be left out)."""
    if model is None:
        raise DeployerArgumentError(
            f"{deployer}() needs the model to serve: pass {parameter}=<the model>"
        )


def deploy_framework_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    closure: FrameworkClosure,
    save_model: ModelSaver,
    options: DeploymentOptions,
) -> None:
    """Saves the model (`save_model`) and `closure` into a fresh model directory and deploys it as
    model `name` at `version` with `options`; returns once the replicas are connected."""
    with tempfile.TemporaryDirectory(prefix=f"clipper-{name}-") as model_dir:
        save_model(Path(model_dir))
        save_closure(closure, model_dir)
        build_and_deploy(clipper_conn, name, version, input_type, model_dir, options)
    logger.info(
        "event=framework_model_deployed framework=%s model=%s version=%s",
        closure.framework,
        name,
        version,
    )


def endpoint_for(
    deploy: Callable[..., None],
    model_parameter: str | None = None,
    check_model: Callable[[Any], Any] | None = None,
) -> Callable[..., None]:
    """Clipper's `create_endpoint` for a deploy_<kind>_model made by takes_deployment_options:
    create_endpoint(clipper_conn, name, input_type, <the deployer's own model parameters>,
    default_output="None", version="1", slo_micros=3000000, <ENDPOINT_KEYWORDS>, options=None)
    registers application `name`, deploys the model as model `name` and links the two.

    The model (`model_parameter`) is required and passed to `check_model` before anything is
    registered, so a missing or wrong model leaves no application behind.
    """
    own = inspect.signature(deploy.__wrapped__)  # type: ignore[attr-defined]
    model_parameters = [p for p in list(own.parameters.values())[4:] if p.name != "options"]
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        *(own.parameters[name] for name in ("clipper_conn", "name", "input_type")),
        *model_parameters,
        inspect.Parameter("default_output", positional, default="None", annotation="str"),
        inspect.Parameter("version", positional, default="1", annotation="str"),
        inspect.Parameter("slo_micros", positional, default=3000000, annotation="int"),
        own.parameters["options"],
    ]

    def create_endpoint(**arguments: Any) -> None:
        if model_parameter is not None:
            require_model(arguments[model_parameter], model_parameter, "create_endpoint")
            if check_model is not None:
                check_model(arguments[model_parameter])
        conn, name, input_type = (
            arguments["clipper_conn"],
            arguments["name"],
            arguments["input_type"],
        )
        conn.register_application(
            name, input_type, arguments["default_output"], arguments["slo_micros"]
        )
        model = {parameter.name: arguments[parameter.name] for parameter in model_parameters}
        deploy(conn, name, arguments["version"], input_type, **model, options=arguments["options"])
        conn.link_model_to_app(name, name)

    create_endpoint.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    create_endpoint.__module__ = deploy.__module__
    create_endpoint.__qualname__ = "create_endpoint"
    create_endpoint.__doc__ = (
        f"Register application `name`, deploy `{model_parameter or 'func'}` as model `name` at "
        f"`version` ({deploy.__name__}) and link the two."
    )
    return takes_deployment_options(ENDPOINT_KEYWORDS)(create_endpoint)
