"""`clipper policy ...`: the arguments each action takes and how parameters are read (the commands
against a real cluster are in tests/e2e/test_selection_admin.py)."""

import argparse

import pytest

from clipper.exceptions import ClipperException
from clipper.selection.cli_commands import add_policy_commands, parse_params


def build():
    parser = argparse.ArgumentParser(prog="clipper")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, handler):
        command = commands.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        return command

    add_policy_commands(add)
    return parser


def test_parameters_are_json_where_they_parse_and_text_otherwise():
    assert parse_params(["epsilon=0.05", 'weights={"a": 3}', "order=[\"b\",\"a\"]", "tag=fast"]) == {
        "epsilon": 0.05, "weights": {"a": 3}, "order": ["b", "a"], "tag": "fast"
    }  # fmt: skip
    with pytest.raises(ClipperException, match="KEY=VALUE"):
        parse_params(["0.05"])


def test_each_action_takes_its_arguments_and_cluster_options_after_it():
    parser = build()
    args = parser.parse_args(
        [
            "policy",
            "set",
            "app",
            "exp4",
            "--param",
            "confidence_threshold=0.6",
            "--cluster-name",
            "c",
        ]
    )
    assert (args.policy_command, args.app, args.policy, args.param, args.cluster_name) == (
        "set", "app", "exp4", ["confidence_threshold=0.6"], "c"
    )  # fmt: skip
    assert parser.parse_args(["policy", "state", "app", "--uid", "7"]).uid == 7
    assert parser.parse_args(["policy", "reset", "app"]).uid is None
    assert parser.parse_args(["policy", "get", "app"]).handler.__name__ == "get_command"
    with pytest.raises(SystemExit):
        parser.parse_args(["policy"])
