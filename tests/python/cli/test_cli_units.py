"""The CLI's pieces that need no cluster: finding what to serve in a Python file, and rendering the
library's log events as progress lines."""

import io
import logging
import textwrap

import pytest

from clipper.cli import ProgressReporter, build_parser, load_predict_function
from clipper.exceptions import ClipperException


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_a_model_subclass_is_served_through_an_instance(tmp_path):
    path = write(
        tmp_path,
        "model_file.py",
        """
        from clipper.container import Model

        def helper(x):
            return x + 1

        class AddOne(Model):
            def predict_batch(self, inputs):
                return [helper(x) for x in inputs]
        """,
    )
    function, description = load_predict_function(str(path))
    assert function([1, 2]) == [2, 3]
    assert "AddOne" in description


def test_a_named_function_or_the_only_one(tmp_path):
    only = write(tmp_path, "only.py", "def f(inputs):\n    return [len(inputs)] * len(inputs)\n")
    assert load_predict_function(str(only))[0]([7, 8]) == [2, 2]
    two = write(
        tmp_path, "two.py", "def a(inputs):\n    return inputs\ndef b(inputs):\n    return []\n"
    )
    assert load_predict_function(f"{two}:b")[0]([1]) == []
    with pytest.raises(ClipperException, match=r"exactly one function.*found: a, b"):
        load_predict_function(str(two))
    with pytest.raises(ClipperException, match="no function or clipper.container.Model named 'c'"):
        load_predict_function(f"{two}:c")


def test_files_that_cannot_be_served_say_why(tmp_path):
    with pytest.raises(ClipperException, match="neither a Python file"):
        load_predict_function(str(tmp_path / "missing.py"))
    broken = write(tmp_path, "broken.py", "raise RuntimeError('no')\n")
    with pytest.raises(ClipperException, match="importing .*broken.py failed"):
        load_predict_function(str(broken))
    needs_arguments = write(
        tmp_path,
        "needs.py",
        """
        from clipper.container import Model

        class Needs(Model):
            def __init__(self, weights):
                self.weights = weights

            def predict_batch(self, inputs):
                return inputs
        """,
    )
    with pytest.raises(ClipperException, match="cannot be created without arguments"):
        load_predict_function(str(needs_arguments))


def test_the_served_function_survives_a_cloudpickle_round_trip(tmp_path):
    import cloudpickle

    path = write(
        tmp_path,
        "pickled.py",
        "SCALE = 3\ndef f(inputs):\n    return [x * SCALE for x in inputs]\n",
    )
    function, _ = load_predict_function(str(path))
    assert cloudpickle.loads(cloudpickle.dumps(function))([2]) == [6]


def test_progress_lines_come_from_log_events():
    stream = io.StringIO()
    reporter = ProgressReporter(stream)
    logger = logging.getLogger("clipper.test_progress")
    logger.addHandler(reporter)
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            "event=replicas_connecting model=%s version=%s connected=%d wanted=%d", "m", "1", 1, 2
        )
        logger.info("event=something_internal detail=1")
    finally:
        logger.removeHandler(reporter)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("replicas of m:1 connected: 1/2")


def test_batching_options_distinguish_unchanged_from_removing_the_cap():
    from clipper.admin.connection import UNCHANGED

    parser = build_parser()
    args = parser.parse_args(["batching", "m"])
    assert args.max_batch_size is UNCHANGED and args.batch_size is None
    assert parser.parse_args(["batching", "m", "--max-batch-size", "none"]).max_batch_size is None
    assert parser.parse_args(["deploy", "m", "1", "f.py", "--input-type", "d"]).batch_size == -1
