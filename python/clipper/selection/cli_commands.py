"""The `clipper policy set|get|state|reset` commands: an application's selection policy from the shell.

Owns the arguments of the group and the plain-text output of each command; every command goes
through `ClipperConnection` exactly as a Python program would. The CLI lists `add_policy_commands`
among its command groups (clipper._cli.parser).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from clipper.exceptions import ClipperException

Handler = Callable[[argparse.Namespace], int]


def add_policy_commands(add: Callable[[str, str, Handler], argparse.ArgumentParser]) -> None:
    """Declare `clipper policy ...` through the CLI's `add(name, help, handler)`."""
    from clipper._cli.parser import add_cluster_options  # the CLI imports this module

    policy = add("policy", "set or inspect an application's model-selection policy", _need_action)
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    cluster = argparse.ArgumentParser(add_help=False)
    add_cluster_options(cluster, suppress_defaults=True)

    def action(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[cluster], help=help_text, description=help_text)
        parser.set_defaults(handler=handler)
        parser.add_argument("app", help="application name")
        return parser

    set_policy = action(
        "set",
        "choose the app's policy: single, exp3, exp4, ab, cascade, epsilon_greedy, ucb1, or "
        "package.module:ClassName (every user starts afresh)",
        set_command,
    )
    set_policy.add_argument("policy", help="policy name")
    set_policy.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a policy parameter; VALUE is JSON where it parses as JSON, else text "
        '(e.g. --param confidence_threshold=0.6 --param \'weights={"a": 0.9, "b": 0.1}\')',
    )
    action("get", "show the app's policy and the parameters set on it", get_command)
    state = action("state", "show what the policy learned for a user", state_command)
    state.add_argument("--uid", type=int, default=0, help="user id (0)")
    state.add_argument("--json", action="store_true", help="print the state as JSON")
    reset = action(
        "reset", "forget what the policy learned (one user, or every user)", reset_command
    )
    reset.add_argument("--uid", type=int, default=None, help="only this user (default: every user)")


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """{"key": value} from KEY=VALUE texts; VALUE is JSON where it parses, else the text itself."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key.strip():
            raise ClipperException(f"--param {pair!r}: write it as KEY=VALUE, e.g. epsilon=0.05")
        try:
            params[key.strip()] = json.loads(text)
        except ValueError:
            params[key.strip()] = text
    return params


def set_command(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    _connect(args).set_selection_policy(args.app, args.policy, **params)
    print(f"application '{args.app}' now selects models with policy '{args.policy}'")
    return 0


def get_command(args: argparse.Namespace) -> int:
    policy = _connect(args).get_selection_policy(args.app)
    print(f"policy: {policy['policy']}")
    print(f"params: {json.dumps(policy['params'], sort_keys=True)}")
    return 0


def state_command(args: argparse.Namespace) -> int:
    from clipper._cli.common import print_json, print_table

    state = _connect(args).get_selection_state(args.app, uid=args.uid)
    if args.json:
        print_json(state)
        return 0
    rows = [
        {
            "model": name,
            "weight": f"{model['weight']:.4f}",
            "observations": model.get("observations"),
            "mean_loss": None if model.get("mean_loss") is None else f"{model['mean_loss']:.4f}",
        }
        for name, model in state["models"].items()
    ]
    print_table(rows, ["model", "weight", "observations", "mean_loss"])
    print(f"feedback rounds for user {args.uid}: {state['feedback']}")
    return 0


def reset_command(args: argparse.Namespace) -> int:
    _connect(args).reset_selection_state(args.app, uid=args.uid)
    who = "every user" if args.uid is None else f"user {args.uid}"
    print(f"reset what application '{args.app}' learned for {who}")
    return 0


def _need_action(args: argparse.Namespace) -> int:
    raise ClipperException("name an action: clipper policy set|get|state|reset APP ...")


def _connect(args: argparse.Namespace) -> Any:
    from clipper._cli.common import connect_cluster

    return connect_cluster(args)
