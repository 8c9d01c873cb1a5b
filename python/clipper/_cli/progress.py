"""Progress of long `clipper` commands on stderr, rendered from the library's structured log events
(`event=... key=value ...`): rich progress bars on a terminal (package installs, image builds,
replicas connecting, the frontend starting), plain timestamped lines otherwise (pipes, logs, CI)."""

from __future__ import annotations

import logging
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

Fields = dict[str, str]


def _details(fields: Fields, *names: str) -> str:
    """` (name value, ...)` for those of `names` the event has (managers log different ones)."""
    present = [f"{name} {fields[name]}" for name in names if name in fields]
    return f" ({', '.join(present)})" if present else ""


# One line per event worth telling a user about.
MESSAGES: dict[str, Callable[[Fields], str]] = {
    "frontend_starting": lambda f: "starting the frontend" + _details(f, "pid", "container", "log"),
    "frontend_started": lambda f: (
        f"frontend ready: queries at http://{f['query_addr']}"
        if "query_addr" in f
        else "frontend ready" + _details(f, "frontends")
    ),
    "frontend_stopped": lambda f: "stopped the frontend" + _details(f, "pid"),
    "model_built": lambda f: f"packaged model {f['model']}:{f['version']} in {f['image']}",
    "installing_packages": lambda f: f"installing {f['packages']} for the model",
    "image_build_started": lambda f: f"building image {f['image']}",
    "image_build_step": lambda f: f"  {f['image']}: {f['step']}",
    "image_built": lambda f: f"built image {f['image']}" + _details(f, "seconds"),
    "replica_started": lambda f: (
        f"started replica of {f['model']}:{f['version']}"
        + _details(f, "replica", "pid", "container")
    ),
    "replicas_connecting": lambda f: (
        f"replicas of {f['model']}:{f['version']} connected: {f['connected']}/{f['wanted']}"
    ),
    "replica_stopped": lambda f: f"stopped replica {f['replica']} of {f['model']}:{f['version']}",
    "model_version_stopped": lambda f: f"unregistered {f['model']}:{f['version']}",
    "state_cleared": lambda f: "forgot the configuration",
    "replicas_restored": lambda f: (
        f"restarted {f['replicas']} replica(s) of {f['model']}:{f['version']}"
    ),
}


def event_fields(message: str) -> Fields:
    """The `key=value` fields of a log message; quoted values (`step='Step 2/5 : RUN ...'`) may hold
    spaces."""
    try:
        parts = shlex.split(message)
    except ValueError:  # an unbalanced quote: fall back to whitespace
        parts = message.split()
    fields = {}
    for part in parts:
        key, separator, value = part.partition("=")
        if separator:
            fields[key] = value.strip("'\"")
    return fields


class ProgressReporter(logging.Handler):
    """Renders the events of `MESSAGES` as short lines on `stream`, with the time since the command
    started."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.started = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        fields = event_fields(record.getMessage())
        render = MESSAGES.get(fields.get("event", ""))
        if render is None:
            return
        try:
            text = render(fields)
        except KeyError:
            return
        self.stream.write(f"[{time.monotonic() - self.started:5.1f}s] {text}\n")
        self.stream.flush()


class ProgressBars(logging.Handler):
    """Renders long steps as rich progress bars: a step opens with a start event and closes with its
    end event (matched on the fields in `_STEPS`); replicas connecting fill a bar of `wanted`.
    Other events of `MESSAGES` print as lines above the bars."""

    # start event -> (end event, fields naming the step, description)
    _STEPS: ClassVar[dict[str, tuple[str, tuple[str, ...], Callable[[Fields], str]]]] = {
        "frontend_starting": (
            "frontend_started",
            ("cluster",),
            lambda f: f"starting the frontend of {f['cluster']}",
        ),
        "installing_packages": (
            "model_built",
            (),
            lambda f: f"installing {f['packages']}",
        ),
        "image_build_started": (
            "image_built",
            ("image",),
            lambda f: f"building image {f['image']}",
        ),
    }

    def __init__(self, console: Console) -> None:
        super().__init__(level=logging.INFO)
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._open_steps: dict[tuple[str, ...], TaskID] = {}
        self._descriptions: dict[TaskID, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = event_fields(record.getMessage())
        event = fields.get("event", "")
        try:
            if event in self._STEPS:
                _, keys, describe = self._STEPS[event]
                task = self.progress.add_task(describe(fields), total=None)
                self._open_steps[(event, *(fields[key] for key in keys))] = task
                self._descriptions[task] = describe(fields)
                return
            for start, (end, keys, _) in self._STEPS.items():
                if event == end:
                    task = self._open_steps.pop((start, *(fields[key] for key in keys)), None)
                    if task is not None:
                        total = self.progress.tasks[task].total or 1
                        self.progress.update(
                            task,
                            total=total,
                            completed=total,
                            description=self._descriptions.pop(task),
                        )
            if event == "replicas_connecting":
                self._replicas_connecting(fields)
                return
            if event == "image_build_step":
                self._image_build_step(fields)
                return
            render = MESSAGES.get(event)
            if render is not None:
                self.progress.console.print(render(fields), highlight=False)
        except KeyError:  # an event without the fields this version knows: not worth a traceback
            return

    def _image_build_step(self, fields: Fields) -> None:
        """Docker's `Step N/M : ...` lines fill the image's bar."""
        task = self._open_steps.get(("image_build_started", fields["image"]))
        step = re.match(r"Step (\d+)/(\d+)", fields["step"])
        if task is None or step is None:
            return
        self.progress.update(
            task,
            total=int(step.group(2)),
            completed=int(step.group(1)) - 1,
            description=f"building image {fields['image']}: {fields['step'][:60]}",
        )

    def _replicas_connecting(self, fields: Fields) -> None:
        key = ("replicas_connecting", fields["model"], fields["version"])
        wanted, connected = int(fields["wanted"]), int(fields["connected"])
        task = self._open_steps.get(key)
        if task is None:
            description = f"replicas of {fields['model']}:{fields['version']} connecting"
            task = self.progress.add_task(description, total=wanted)
            self._open_steps[key] = task
        self.progress.update(task, total=wanted, completed=connected)
        if connected >= wanted:
            del self._open_steps[key]


@contextmanager
def reporting_progress(enabled: bool, stream: TextIO | None = None) -> Iterator[None]:
    """While active, the `clipper` logger's events show as progress on `stream` (stderr): bars when
    it is a terminal, lines otherwise."""
    if not enabled:
        yield
        return
    stream = stream or sys.stderr
    logger = logging.getLogger("clipper")
    bars: ProgressBars | None = None
    handler: logging.Handler
    if stream.isatty():
        bars = ProgressBars(Console(file=stream))
        handler = bars
    else:
        handler = ProgressReporter(stream)
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if bars is not None:
        bars.progress.start()
    try:
        yield
    finally:
        if bars is not None:
            bars.progress.stop()
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
