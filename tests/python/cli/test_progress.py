"""Progress rendering of the CLI (clipper._cli.progress): rich bars on a terminal, driven by the same
structured log events the library emits during deploys, package installs and image builds."""

import io
import logging

from rich.console import Console

from clipper._cli.progress import ProgressBars, ProgressReporter, event_fields, reporting_progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def emit(logger, message, *args):
    logger.info(message, *args)


def test_bars_follow_a_deploys_events_to_completion():
    screen = io.StringIO()
    bars = ProgressBars(Console(file=screen, force_terminal=True, width=120))
    logger = logging.getLogger("clipper.test_bars")
    logger.addHandler(bars)
    logger.setLevel(logging.INFO)
    bars.progress.start()
    try:
        emit(logger, "event=installing_packages packages=%s target=%s", "six,attrs", "/tmp/x")
        emit(logger, "event=image_build_started image=%s", "clipper/m:1")
        emit(logger, "event=image_build_step image=%s step=%r", "clipper/m:1", "Step 2/4 : RUN pip")
        assert bars.progress.tasks[1].total == 4 and bars.progress.tasks[1].completed == 1
        assert bars.progress.tasks[1].description.endswith("Step 2/4 : RUN pip")
        emit(logger, "event=model_built cluster=c model=m version=1 image=/tmp/m installed=six")
        emit(logger, "event=image_built image=%s", "clipper/m:1")
        for connected in (0, 1, 2):
            emit(
                logger,
                "event=replicas_connecting model=m version=1 connected=%d wanted=2",
                connected,
            )
        emit(logger, "event=something_internal detail=1")
    finally:
        bars.progress.stop()
        logger.removeHandler(bars)
    tasks = {task.description: task for task in bars.progress.tasks}
    assert set(tasks) == {
        "installing six,attrs",
        "building image clipper/m:1",
        "replicas of m:1 connecting",
    }
    assert all(task.finished for task in tasks.values())
    assert (
        tasks["replicas of m:1 connecting"].completed,
        tasks["replicas of m:1 connecting"].total,
    ) == (2, 2)
    output = screen.getvalue()
    assert "packaged model m:1 in /tmp/m" in output and "2/2" in output


def test_event_fields_keep_quoted_values_whole():
    assert event_fields("event=image_build_step image=a:1 step='Step 1/3 : FROM base'") == {
        "event": "image_build_step",
        "image": "a:1",
        "step": "Step 1/3 : FROM base",
    }
    assert event_fields("event=x cause='unbalanced") == {"event": "x", "cause": "unbalanced"}


def test_events_of_every_manager_render_as_lines():
    stream = io.StringIO()
    reporter = ProgressReporter(stream)
    for message in (
        "event=frontend_starting cluster=c container=clipper-c-frontend image=clipper/frontend:1",
        "event=frontend_started cluster=c frontends=2",
        "event=replica_started cluster=c model=m version=1 container=m-1-0",
    ):
        reporter.emit(logging.LogRecord("clipper", logging.INFO, __file__, 1, message, (), None))
    assert (
        stream.getvalue()
        .splitlines()[0]
        .endswith("starting the frontend (container clipper-c-frontend)")
    )
    assert "frontend ready (frontends 2)" in stream.getvalue()
    assert "started replica of m:1 (container m-1-0)" in stream.getvalue()


def test_an_event_missing_its_fields_is_ignored():
    bars = ProgressBars(Console(file=io.StringIO(), force_terminal=True))
    record = logging.LogRecord(
        "clipper", logging.INFO, __file__, 1, "event=replicas_connecting", (), None
    )
    bars.emit(record)
    assert bars.progress.tasks == []


def test_a_terminal_gets_bars_and_a_pipe_gets_lines():
    logger = logging.getLogger("clipper.test_choice")
    terminal, pipe = Terminal(), io.StringIO()
    with reporting_progress(True, terminal):
        logger.info("event=installing_packages packages=six target=/tmp/t")
        logger.info("event=model_built cluster=c model=m version=1 image=/tmp/m installed=six")
    with reporting_progress(True, pipe):
        logger.info("event=installing_packages packages=six target=/tmp/t")
    assert "\x1b[" in terminal.getvalue() and "installing six" in terminal.getvalue()
    assert (
        pipe.getvalue().endswith("installing six for the model\n")
        and "\x1b[" not in pipe.getvalue()
    )
    with reporting_progress(False, pipe):
        logger.info("event=installing_packages packages=attrs target=/tmp/t")
    assert "attrs" not in pipe.getvalue()
